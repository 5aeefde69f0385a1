"""A cache of ADEPT's pretrained world models, shared by runs that would pretrain the same one.

World-model pretraining is most of an ADEPT run's time at the budgets of a recipe screen (about two
thirds of a run of 10,000 learner updates, docs/benchmarks.md), and every variant
of the closed loop (synthetic share, rollout noise, uncertainty penalty, ...) pretrains exactly the same
model. With ``world_model_cache: DIR``, a run looks up its pretraining under a key made of everything
that determines it, and either starts from the stored result or pretrains and stores it:

* the tensors the world model trains on (observations, actions, rewards, next observations, terminals,
  after the data module's normalisation and reward transform), hashed;
* the world model's, the reward head's and the behaviour policy's settings, the pretraining batch and
  length, the held-out segments and ADEPT's sampling seed (so two seeds never share a model);
* the world-model and behaviour optimizers' class and settings;
* with ``uncertainty_ensemble``, the dynamics ensemble's size, widths and batch (it pretrains with the
  world model; runs without one keep the keys they had).

An entry holds the three networks' weights (and the ensemble's), their optimizers' states and ADEPT's random stream as
pretraining left it (the held-out rows follow from the data and the seed, both in the key), so the
closed loop continues as it would have after its own pretraining. Only the real batches the data module hands the learner differ (a run that pretrained has
drawn a thousand of them meanwhile): runs from the cache are the same procedure, not the same bits.
Entries are written atomically and checked on reading; a damaged one is reported with its path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from lightning_offrl.data.d4rl_hdf5 import data_fingerprint
from lightning_offrl.errors import ConfigError
from lightning_offrl.files import write_atomically

FORMAT = "lightning_offrl.adept_world_model/1"


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """:func:`~lightning_offrl.data.d4rl_hdf5.data_fingerprint` of the named tensors, in key order."""
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in tensors.items()}
    return data_fingerprint(arrays, keys=sorted(arrays))


def _plain(key: Mapping[str, Any]) -> Any:
    """``key`` as JSON gives it back (tuples as lists, anything else as its string): what is stored."""
    return json.loads(json.dumps(key, sort_keys=True, default=str))


def entry_name(key: Mapping[str, Any]) -> str:
    """The file name of a key: ``world_model-<16 hex>.pt``."""
    text = json.dumps(_plain(key), sort_keys=True)
    return f"world_model-{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}.pt"


def entry_path(directory: str | os.PathLike[str], key: Mapping[str, Any]) -> Path:
    return Path(directory).expanduser() / entry_name(key)


def save_entry(directory: str | os.PathLike[str], key: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """Writes ``state`` under ``key`` (a temporary file renamed into place: readers never see half a file)."""
    path = entry_path(directory, key)
    write_atomically(path, lambda tmp: torch.save({"format": FORMAT, "key": _plain(key), **state}, tmp))
    return path


def load_entry(directory: str | os.PathLike[str], key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored pretraining for ``key``, or ``None`` when the cache holds none.

    Raises:
        ConfigError: the entry exists but cannot be read, is not an ADEPT world model, or was stored
            under another key; the message names the file (delete it, and the next run pretrains anew).
    """
    path = entry_path(directory, key)
    if not path.is_file():
        return None
    fix = f"delete {path} and the next run pretrains and stores it anew"
    try:
        entry = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ConfigError(f"model.world_model_cache: {path} is not readable ({type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else 'truncated?'}); {fix}") from err
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise ConfigError(f"model.world_model_cache: {path} is not a pretrained ADEPT world model "
                          f"(expected format {FORMAT!r}); {fix}")
    stored = entry.get("key")
    expected = _plain(key)
    if stored != expected:
        differing = sorted(k for k in set(stored or {}) | set(expected) if (stored or {}).get(k) != expected.get(k))
        raise ConfigError(f"model.world_model_cache: {path} was stored for other settings "
                          f"({', '.join(differing)} differ); {fix}")
    return entry
