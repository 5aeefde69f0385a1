"""``lightning_offrl export``: a checkpoint's deterministic acting policy as one self-contained file.

The file computes exactly what ``act()`` computes in its deterministic mode, observation
standardisation and the clip to ``[-1, 1]`` included, on raw environment observations:
``observations (N, obs_dim) float32 -> actions (N, act_dim) float32``, any batch size ``N``. It needs
neither this package nor Lightning: a TorchScript file runs with ``torch.jit.load``, an ONNX file with
``onnxruntime``. Both carry their description (method, dataset, sizes, package version, acting
settings) as metadata: TorchScript extra file ``lightning_offrl.json``, ONNX ``metadata_props``.

How each method's policy becomes a graph:

- **Feed-forward policies** (IQL, SAC-N, BC, DTQL's one-step policy, ADEPT's learner):
  :class:`ExportedPolicy` wraps the actor's deterministic action with the observation statistics as
  buffers; it is traced with ``torch.jit.trace``.
- **SWG** samples a guided diffusion model whose guidance is a gradient of the model's own weight
  prediction. With SWG's evaluation setting (``temperature = 0``, one candidate) that sampler is a
  deterministic function of the observation: its fixed number of steps, each a forward and a
  backward pass of the denoiser, is unrolled into one graph of plain tensor operations
  (``make_fx`` with symbolic batch size), so the backward passes become ordinary operations that
  TorchScript and ONNX can hold. A sampler that draws noise (``temperature > 0``, SWG-R's several
  candidates) is refused: its draws come from torch's generator, which no exported graph can
  reproduce; export with ``--set temperature=0 --set num_candidates=1`` or act through the package.
- DTQL with ``num_action_candidates > 1`` draws candidates from a seeded torch generator whose draws
  depend on the batch size; it is refused with the same reasoning (``--set num_action_candidates=1``
  exports the one-step policy's mode).

ONNX files are written by torch's TorchScript-based exporter (``dynamo=False``) from the same
TorchScript module: on CPU it takes about a second where the ``torch.export``-based exporter takes
minutes for the unrolled SWG graph, and it needs no ``onnxscript``.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

import lightning_offrl
from lightning_offrl.algos.base import OfflineRLModule
from lightning_offrl.errors import OffRLError
from lightning_offrl.files import write_atomically

FORMATS: tuple[str, ...] = ("torchscript", "onnx")
# Output suffixes that name a format when --format is not given.
SUFFIX_FORMATS: dict[str, str] = {".pt": "torchscript", ".ts": "torchscript", ".onnx": "onnx"}
METADATA_FILE = "lightning_offrl.json"  # TorchScript extra file holding the metadata
INPUT_NAME = "observations"
OUTPUT_NAME = "actions"
ONNX_OPSET = 17
# Largest |exported - act()| accepted by the check that follows every export.
CHECK_TOLERANCE = 1e-5


class ExportError(OffRLError):
    """A checkpoint or request that cannot be exported; the message says why and what to do."""


# ----------------------------------------------------------------------------------- wrappers
class DeterministicActorPolicy(nn.Module):
    """An actor's deterministic action: ``actor.deterministic(obs)``.

    Every actor of :mod:`lightning_offrl.networks.actors` has ``deterministic``; it is what
    ``policy()`` returns for IQL, SAC, BC and DTQL's one-step policy.
    """

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N, obs_dim)`` standardised observations -> ``(N, act_dim)`` actions."""
        return self.actor.deterministic(obs)


class ExportedPolicy(nn.Module):
    """Raw observations to clipped actions: ``clip(policy((obs - mean) / std), -1, 1)``, as ``act()``.

    Args:
        policy: standardised observations ``(N, obs_dim)`` -> actions ``(N, act_dim)``.
        obs_mean: ``(obs_dim,)`` the module's observation mean.
        obs_std: ``(obs_dim,)`` the module's observation standard deviation.
    """

    def __init__(self, policy: nn.Module, obs_mean: torch.Tensor, obs_std: torch.Tensor) -> None:
        super().__init__()
        self.policy = policy
        self.register_buffer("obs_mean", obs_mean.detach().clone())
        self.register_buffer("obs_std", obs_std.detach().clone())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """``(N, obs_dim)`` raw observations -> ``(N, act_dim)`` actions in ``[-1, 1]``."""
        return self.policy((observations - self.obs_mean) / self.obs_std).clamp(-1.0, 1.0)


def _deterministic_actor(module: OfflineRLModule) -> nn.Module:
    """The feed-forward policy of ``module`` (normalised observations -> actions), or ExportError."""
    from lightning_offrl.algos import ADEPT, BC, DTQL, IQL, SAC

    name = type(module).__name__
    if isinstance(module, ADEPT):
        # ADEPT acts with its learner on ADEPT's own observation statistics (see ADEPT.policy).
        return _deterministic_actor(module.learner)
    if isinstance(module, DTQL) and module.num_action_candidates > 1:
        raise ExportError(
            f"DTQL with num_action_candidates={module.num_action_candidates} picks among candidates drawn "
            "from a seeded torch generator whose draws depend on the batch size, which an exported graph "
            "cannot reproduce; export the one-step policy's mode with --set num_action_candidates=1"
        )
    if isinstance(module, (IQL, SAC, BC, DTQL)):
        return DeterministicActorPolicy(module.actor)
    raise ExportError(f"{name} has no exporter; exportable methods: IQL, SAC, BC, DTQL, ADEPT, SWG")


def _check_swg_is_deterministic(module: Any) -> None:
    if module.temperature != 0.0 or module.num_candidates != 1:
        raise ExportError(
            f"SWG with temperature={module.temperature} and num_candidates={module.num_candidates} "
            "draws sampling noise from torch's generator at every step, which an exported graph cannot "
            "reproduce; export SWG's deterministic sampler with --set temperature=0 --set num_candidates=1, "
            "or act through the package (lightning_offrl evaluate)"
        )


# ---------------------------------------------------------------- unrolling a sampler (SWG)
# Keyword arguments of tensor creation that the unrolled (CPU, strided) graph drops.
_CREATION_DEFAULTS = ("layout", "device", "pin_memory")


def _size(x: torch.Tensor, dim: int) -> int:
    """``x.size(dim)``: stands for ``aten.sym_size`` so that TorchScript keeps the batch size dynamic."""
    return x.size(dim)


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x.to(dtype)``: stands for ``aten._to_copy``, which the ONNX exporter does not translate."""
    return x.to(dtype)


def _slice_scatter(
    inp: torch.Tensor, src: torch.Tensor, dim: int = 0, start: int | None = None, end: int | None = None,
    step: int = 1,
) -> torch.Tensor:
    """``aten.slice_scatter`` as a concatenation (the ONNX exporter has no slice_scatter).

    Backward passes of slicing produce it; here the slice is always contiguous (``step = 1``).
    """
    aten = torch.ops.aten
    size = inp.shape[dim]
    start = 0 if start is None else (start + size if start < 0 else min(start, size))
    end = size if end is None else (end + size if end < 0 else min(end, size))
    if step != 1:
        raise ExportError(f"cannot unroll a strided slice_scatter (step {step})")
    parts = []
    if start > 0:
        parts.append(aten.slice.Tensor(inp, dim, 0, start))
    parts.append(src)
    if end < size:
        parts.append(aten.slice.Tensor(inp, dim, end, size))
    return aten.cat.default(parts, dim)


def _select_scatter(inp: torch.Tensor, src: torch.Tensor, dim: int, index: int) -> torch.Tensor:
    """``aten.select_scatter`` as :func:`_slice_scatter` of one index."""
    index = index + inp.shape[dim] if index < 0 else index
    return _slice_scatter(inp, src.unsqueeze(dim), dim, index, index + 1)


def unroll_to_torchscript(
    fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor
) -> torch.jit.ScriptModule:
    """Records ``fn`` (autograd calls included) as one TorchScript graph of tensor operations.

    ``make_fx`` runs ``fn`` on a symbolic batch size and records every ATen operation it reaches,
    the backward passes of ``torch.autograd.grad`` included, decomposed into core operations. The
    graph is then scripted (not traced), which keeps the batch size symbolic.

    Args:
        fn: ``(N, obs_dim) -> (N, act_dim)``; it must draw no random numbers.
        example: ``(N, obs_dim)`` an input to record with (``N >= 2``, so that no size 1 is specialised).

    Returns:
        The scripted graph, ``(N, obs_dim) -> (N, act_dim)`` for any ``N``, on CPU.
    """
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    aten = torch.ops.aten
    decompositions = dict(core_aten_decompositions())
    decompositions[aten.slice_scatter.default] = _slice_scatter
    decompositions[aten.select_scatter.default] = _select_scatter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph_module = make_fx(
            fn, tracing_mode="symbolic", decomposition_table=decompositions, _allow_non_fake_inputs=True
        )(example)
    # TorchScript resolves an operator packet (aten.sub) by its argument types, not an overload
    # (aten.sub.Tensor); a few operations are rewritten into forms both TorchScript and ONNX know.
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is aten.sym_size.int:
            node.target = _size
        elif node.target is aten._to_copy.default:
            if set(node.kwargs) - {"dtype"}:
                raise ExportError(f"cannot unroll a copy with {sorted(node.kwargs)}; only dtype casts unroll")
            node.args, node.kwargs, node.target = (node.args[0], node.kwargs["dtype"]), {}, _cast
        elif node.target is aten.sum.dim_IntList and not node.args[1]:
            node.args, node.target = (node.args[0],), aten.sum.default  # empty dim list: a full sum
        if isinstance(node.target, torch._ops.OpOverload):
            node.target = node.target.overloadpacket
            # Everything is created on the CPU in the default layout: these arguments add nothing.
            node.kwargs = {k: v for k, v in node.kwargs.items() if k not in _CREATION_DEFAULTS}
    graph_module.recompile()
    return torch.jit.script(graph_module)


# ------------------------------------------------------------------------------ the policy graph
def policy_graph(module: OfflineRLModule) -> torch.jit.ScriptModule:
    """The deterministic acting policy of ``module`` as TorchScript (raw observations -> actions).

    Args:
        module: a method in eval mode, on CPU.

    Returns:
        ``(N, obs_dim) float32 -> (N, act_dim) float32`` in ``[-1, 1]``, equal to ``module.act``.

    Raises:
        ExportError: if the module's acting draws random numbers or the method has no exporter.
    """
    from lightning_offrl.algos import SWG

    module.eval()
    example = _example_observations(module, 4)
    if isinstance(module, SWG):
        _check_swg_is_deterministic(module)
        return unroll_to_torchscript(
            lambda obs: module.policy(module.normalize_obs(obs)).clamp(-1.0, 1.0), example
        )
    wrapper = ExportedPolicy(_deterministic_actor(module), module.obs_mean, module.obs_std).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about Python values it records as constants
        return torch.jit.trace(wrapper, example, check_trace=False)


def _example_observations(module: OfflineRLModule, n: int, seed: int = 0) -> torch.Tensor:
    """``(n, obs_dim)`` observations around the data's statistics (``mean + std * N(0, 1)``)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, module.obs_dim, generator=generator)
    return (module.obs_mean.cpu() + module.obs_std.cpu() * noise).float()


# ------------------------------------------------------------------------------------- writing
def export_metadata(module: OfflineRLModule, info: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """What the exported file records about itself (all values JSON-serialisable)."""
    hparams = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_")}
    return {
        "method": type(module).__name__,
        "class_path": f"{type(module).__module__}.{type(module).__qualname__}",
        "dataset": info.get("dataset"),
        "is_replica": bool(info.get("is_replica", False)),
        "num_updates": int(info.get("num_updates", 0)),
        "obs_dim": int(module.obs_dim),
        "act_dim": int(module.act_dim),
        "input": f"{INPUT_NAME}: (N, {module.obs_dim}) float32 raw environment observations",
        "output": f"{OUTPUT_NAME}: (N, {module.act_dim}) float32 actions in [-1, 1]",
        "format": fmt,
        "package": "lightning_offrl",
        "package_version": lightning_offrl.__version__,
        "torch_version": torch.__version__,
        "hyper_parameters": json.loads(json.dumps(hparams, default=str)),
    }


def save_torchscript(graph: torch.jit.ScriptModule, path: Path, metadata: Mapping[str, Any]) -> None:
    """Writes ``graph`` with ``metadata`` as the extra file ``lightning_offrl.json``."""
    extra = {METADATA_FILE: json.dumps(metadata, indent=2, sort_keys=True)}
    write_atomically(path, lambda tmp: torch.jit.save(graph, str(tmp), _extra_files=extra))


def save_onnx(
    graph: torch.jit.ScriptModule, example: torch.Tensor, path: Path, metadata: Mapping[str, Any]
) -> None:
    """Writes ``graph`` as ONNX (dynamic batch axis) with ``metadata`` in ``metadata_props``.

    Top-level metadata values are stored as strings (JSON for anything but a string), so
    ``json.loads`` reads each back.
    """
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation note
        torch.onnx.export(
            graph, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET, dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    model.producer_name, model.producer_version = "lightning_offrl", lightning_offrl.__version__
    onnx.checker.check_model(model)
    write_atomically(path, lambda tmp: onnx.save(model, str(tmp)))


# ------------------------------------------------------------------------------------- reading
def load_exported(path: str | Path) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """Opens an exported policy the way a user without this package would, and its metadata.

    Args:
        path: a ``.pt`` (TorchScript) or ``.onnx`` file written by :func:`export_checkpoint`.

    Returns:
        ``policy(obs: (N, obs_dim) float32) -> (N, act_dim) float32`` and the metadata dictionary.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        metadata = {k: v if k in ("input", "output") else _json_or_text(v) for k, v in props.items()}
        return (lambda obs: session.run(None, {INPUT_NAME: np.asarray(obs, dtype=np.float32)})[0]), metadata
    extra = {METADATA_FILE: ""}
    graph = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return graph(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()

    return policy, json.loads(extra[METADATA_FILE] or "{}")


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# ---------------------------------------------------------------------------------- the command
def resolve_format(fmt: str | None, output: Path) -> str:
    """The format asked for, or the one the output's suffix names; ExportError if neither."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
        return fmt
    inferred = SUFFIX_FORMATS.get(output.suffix.lower())
    if inferred is None:
        raise ExportError(
            f"cannot tell the format from {output.name!r}: pass --format {'|'.join(FORMATS)} or name the "
            f"output {', '.join(SUFFIX_FORMATS)}"
        )
    return inferred


def export_checkpoint(
    ckpt_path: str | Path,
    output: str | Path,
    fmt: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Exports the deterministic acting policy of a checkpoint and checks the file against ``act()``.

    Args:
        ckpt_path: a ``.ckpt`` written by ``lightning_offrl fit``.
        output: the file to write (replaced atomically).
        fmt: ``torchscript`` or ``onnx``; default: from the output's suffix.
        overrides: acting-time constructor arguments (as ``evaluate --set``).

    Returns:
        The metadata written, plus ``export_seconds`` and ``max_abs_error`` (exported vs ``act()``
        on 64 observations).

    Raises:
        ExportError: unknown format, a policy that cannot be exported, or a file that disagrees with
            ``act()`` (then ``output`` is not written; an earlier file there stays as it was).
        OffRLError: a missing or unreadable checkpoint.
    """
    from lightning_offrl.evaluate import load_module

    output = Path(output)
    fmt = resolve_format(fmt, output)
    module, info = load_module(ckpt_path, overrides=overrides)
    return export_module(module, output, fmt, info)


def export_module(
    module: OfflineRLModule, output: str | Path, fmt: str, info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Exports ``module``'s deterministic acting policy to ``output`` and checks it against ``act()``.

    Args:
        module: the method (moved to CPU and put in eval mode).
        output: the file to write (replaced atomically, only once the check passed).
        fmt: ``torchscript`` or ``onnx``.
        info: what the checkpoint says about the data (``dataset``, ``is_replica``, ``num_updates``).

    Returns:
        See :func:`export_checkpoint`.
    """
    output = Path(output)
    fmt = resolve_format(fmt, output)
    module = module.cpu().eval()
    start = time.perf_counter()
    graph = policy_graph(module)
    metadata = export_metadata(module, info or {"num_updates": int(module.num_updates)}, fmt)
    with tempfile.TemporaryDirectory(prefix="lightning_offrl_export_") as folder:
        staged = Path(folder) / f"policy{'.onnx' if fmt == 'onnx' else '.pt'}"
        if fmt == "onnx":
            save_onnx(graph, _example_observations(module, 4), staged, metadata)
        else:
            save_torchscript(graph, staged, metadata)
        seconds = time.perf_counter() - start
        # Check the file as a user will open it before it replaces anything at `output`.
        error = check_against_act(staged, module)
        write_atomically(output, lambda tmp: tmp.write_bytes(staged.read_bytes()))
    return {**metadata, "export_seconds": seconds, "max_abs_error": error}


def check_against_act(path: Path, module: OfflineRLModule, n: int = 64) -> float:
    """Largest ``|exported(obs) - act(obs)|`` on ``n`` observations; ExportError above the tolerance."""
    policy, _ = load_exported(path)
    obs = _example_observations(module, n, seed=1).numpy()
    error = float(np.abs(policy(obs) - module.act(obs)).max())
    if not error <= CHECK_TOLERANCE:
        raise ExportError(
            f"the exported {type(module).__name__} policy differs from act() by {error:.3g} "
            f"(> {CHECK_TOLERANCE}); nothing was written. This is a bug: please report it with the checkpoint"
        )
    return error


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lightning_offrl export",
        description="Write a checkpoint's deterministic acting policy as a TorchScript or ONNX file.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning_offrl fit`")
    parser.add_argument("--output", required=True, help="file to write (.pt for TorchScript, .onnx for ONNX)")
    parser.add_argument("--format", default=None, dest="fmt", metavar="{torchscript,onnx}",
                        help="file format (default: from the output's suffix)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                        help="change an acting-time argument first, e.g. --set num_action_candidates=1; "
                        "repeatable")
    args = parser.parse_args(list(argv))

    from lightning_offrl.evaluate import parse_overrides

    output = Path(args.output)
    resolve_format(args.fmt, output)  # a bad format fails before the checkpoint is read
    result = export_checkpoint(args.ckpt_path, output, args.fmt, parse_overrides(args.overrides))
    label = " [replica data: not D4RL's]" if result["is_replica"] else ""
    print(f"{result['method']} after {result['num_updates']} updates on {result['dataset']}{label}")
    print(f"wrote {output} ({result['format']}, {output.stat().st_size / 1024:.0f} KiB) in "
          f"{result['export_seconds']:.1f} s")
    print(f"input {result['input']}; output {result['output']}")
    print(f"checked against act() on 64 observations: max |difference| {result['max_abs_error']:.2g}")
    return 0
