"""``lightning_offrl export``: every exportable method's file equals ``act()``, loads without the package,
and bad requests get one clear message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from lightning_offrl import __version__
from lightning_offrl.algos.base import OfflineRLModule
from lightning_offrl.cli import main as cli_main
from lightning_offrl.evaluate import load_module
from lightning_offrl.export import ExportError, export_checkpoint, export_module
from tests.algos.conformance import fit, small_datamodule
from tests.algos.test_adept import tiny_adept
from tests.algos.test_baselines import FACTORIES as BASELINES
from tests.algos.test_dtql import small_dtql
from tests.algos.test_swg import _small_swg

UPDATES = 12
# (obs_dim, act_dim, max_updates) -> a tiny module; SWG with 2 diffusion steps keeps its unrolled graph small.
EXPORTABLE: dict[str, Callable[[int, int, int], OfflineRLModule]] = {
    **BASELINES,
    "dtql": lambda o, a, n: small_dtql(o, a, n, pretrain_updates=6),
    "adept_iql": lambda o, a, n: tiny_adept(o, a, n, "iql"),
    "adept_sac": lambda o, a, n: tiny_adept(o, a, n, "sac"),
    "swg": lambda o, a, n: _small_swg(o, a, n, diffusion_steps=2, guidance_scale=3.0, critic_updates=6),
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Tiny networks on a shared 2-core machine: a second thread only contends.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trained_checkpoint(name: str, pointgoal_file: Path, root: Path) -> Path:
    datamodule = small_datamodule(pointgoal_file, batches_per_step=2, steps_per_epoch=3)
    module = EXPORTABLE[name](datamodule.obs_dim, datamodule.act_dim, UPDATES)
    fit(module, datamodule, root)
    return root / "ckpt" / "last.ckpt"


def _observations(n: int, seed: int = 0) -> np.ndarray:
    # Beyond the data's range too, so that the clip to [-1, 1] is exercised.
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(n, 2)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(EXPORTABLE))
def test_exported_files_equal_act(name: str, pointgoal_file: Path, tmp_path: Path) -> None:
    ckpt = _trained_checkpoint(name, pointgoal_file, tmp_path)
    module, _ = load_module(ckpt)
    obs = _observations(33)
    expected = module.act(obs)
    assert np.abs(expected).max() < 1.0 or name == "swg", "the test needs actions inside the bounds"

    # TorchScript: plain torch.jit.load, metadata in the extra file.
    ts_path = tmp_path / f"{name}.pt"
    result = export_checkpoint(ckpt, ts_path, "torchscript")
    extra = {"lightning_offrl.json": ""}
    graph = torch.jit.load(str(ts_path), _extra_files=extra)
    with torch.no_grad():
        np.testing.assert_allclose(graph(torch.from_numpy(obs)).numpy(), expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(graph(torch.from_numpy(obs[:1])).numpy(), expected[:1], rtol=0, atol=1e-5)
    meta = json.loads(extra["lightning_offrl.json"])
    assert meta["method"] == type(module).__name__ and meta["dataset"] == "pointgoal-random-v0"
    assert (meta["obs_dim"], meta["act_dim"], meta["package_version"]) == (2, 2, __version__)
    assert meta["num_updates"] == UPDATES and result["max_abs_error"] <= 1e-5

    # ONNX: onnxruntime, metadata in metadata_props.
    onnx_path = tmp_path / f"{name}.onnx"
    export_checkpoint(ckpt, onnx_path, "onnx")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (obs, obs[:1]):
        (actions,) = session.run(None, {"observations": batch})
        np.testing.assert_allclose(actions, module.act(batch), rtol=0, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["method"] == type(module).__name__ and props["dataset"] == "pointgoal-random-v0"
    assert (json.loads(props["obs_dim"]), json.loads(props["act_dim"])) == (2, 2)
    assert props["package_version"] == __version__


def test_cli_export_end_to_end_and_files_run_without_the_package(
    pointgoal_file: Path, tmp_path: Path
) -> None:
    ckpt = _trained_checkpoint("iql", pointgoal_file, tmp_path)
    done = subprocess.run(  # the format comes from the suffix
        [sys.executable, "-m", "lightning_offrl.cli", "export", "--ckpt_path", str(ckpt),
         "--output", str(tmp_path / "policy.onnx")],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IQL after 12 updates on pointgoal-random-v0" in done.stdout
    assert "max |difference|" in done.stdout
    export_checkpoint(ckpt, tmp_path / "policy.pt")

    # A fresh interpreter where importing lightning_offrl or lightning fails.
    obs = _observations(5)
    np.save(tmp_path / "obs.npy", obs)
    script = (
        "import sys; sys.modules['lightning_offrl'] = None; sys.modules['lightning'] = None\n"
        "import numpy as np, torch, onnxruntime\n"
        "obs = np.load('obs.npy')\n"
        "a = torch.jit.load('policy.pt')(torch.from_numpy(obs)).detach().numpy()\n"
        "b = onnxruntime.InferenceSession('policy.onnx').run(None, {'observations': obs})[0]\n"
        "np.save('out.npy', np.stack([a, b]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    module, _ = load_module(ckpt)
    for actions in np.load(tmp_path / "out.npy"):
        np.testing.assert_allclose(actions, module.act(obs), rtol=0, atol=1e-5)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ckpt_path", "whole.ckpt", "--output", "policy.pt", "--format", "savedmodel"],
         "unknown format 'savedmodel'"),
        (["--ckpt_path", "whole.ckpt", "--output", "policy.tflite"],
         "cannot tell the format from 'policy.tflite'"),
        (["--ckpt_path", "missing.ckpt", "--output", "policy.pt"], "--ckpt_path missing.ckpt: no such file"),
        (["--ckpt_path", "truncated.ckpt", "--output", "policy.onnx"],
         "truncated.ckpt: not a readable PyTorch checkpoint"),
    ],
)
def test_bad_requests_get_one_message_and_rc_2(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": BASELINES["bc"](2, 2, 5).state_dict()}, "whole.ckpt")
    Path("truncated.ckpt").write_bytes(Path("whole.ckpt").read_bytes()[:1000])
    assert cli_main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated.ckpt", "whole.ckpt"]  # nothing written


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: small_dtql(2, 2, 5, num_action_candidates=8), "--set num_action_candidates=1"),
        (lambda: _small_swg(2, 2, 5, temperature=1.0), "--set temperature=0 --set num_candidates=1"),
        (lambda: _small_swg(2, 2, 5, temperature=1.0, num_candidates=4), "num_candidates=4"),
    ],
)
def test_policies_that_draw_noise_are_refused_and_nothing_is_written(
    make: Callable[[], OfflineRLModule], message: str, tmp_path: Path
) -> None:
    output = tmp_path / "policy.pt"
    output.write_bytes(b"an earlier export")
    with pytest.raises(ExportError, match=re.escape(message)):
        export_module(make(), output, "torchscript")
    assert output.read_bytes() == b"an earlier export"
