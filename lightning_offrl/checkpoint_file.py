"""Reading a ``.ckpt`` file written by ``lightning_offrl fit``, with one clear error for anything else.

Every command that takes ``--ckpt_path`` (``fit``, ``validate``, ``test``, ``evaluate``) reads the file
through :func:`read_checkpoint` first, so a missing, truncated or foreign file is reported the same way
everywhere, before any data is built or any network is instantiated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_offrl.errors import OffRLError

CHECKPOINT_HINT = "pass the .ckpt file written by `lightning_offrl fit` (runs/<name>/version_<k>/checkpoints/last.ckpt)"


def read_checkpoint(ckpt_path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Loads a checkpoint written by ``lightning_offrl fit`` and checks that it is one.

    Args:
        ckpt_path: the ``.ckpt`` file.
        map_location: device of the loaded tensors.

    Returns:
        The checkpoint dictionary (``state_dict``, ``hyper_parameters``, ``optimizer_states``, the
        ``lightning_offrl`` entry with the module's class path and update count, ...).

    Raises:
        OffRLError: the file is missing, is not a readable PyTorch file (truncated, corrupted, not a
            checkpoint at all), or is a PyTorch file that ``lightning_offrl fit`` did not write (a bare
            state dict, another library's checkpoint).
    """
    import torch  # here, not at import: `lightning_offrl --help` must not pay for torch

    path = Path(ckpt_path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise OffRLError(f"--ckpt_path {path}: {what}; {CHECKPOINT_HINT}")
    try:
        # Not weights_only: checkpoints carry the evaluation callback's results and the data module's
        # state as plain Python objects. Only open checkpoints you trust, as with any pickle.
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OffRLError(
            f"--ckpt_path {path}: not a readable PyTorch checkpoint (truncated or corrupted? "
            f"{type(err).__name__}: {reason}); {CHECKPOINT_HINT}"
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("lightning_offrl"), dict) \
            or "state_dict" not in checkpoint:
        kind = type(checkpoint).__name__
        if isinstance(checkpoint, dict):
            keys = ", ".join(sorted(map(str, checkpoint))[:5])
            kind = f"a dict with keys {keys}{', ...' if len(checkpoint) > 5 else ''}"
        raise OffRLError(
            f"--ckpt_path {path}: a PyTorch file, but not a checkpoint written by `lightning_offrl fit` "
            f"(it holds {kind}; no 'lightning_offrl' entry); {CHECKPOINT_HINT}"
        )
    return checkpoint
