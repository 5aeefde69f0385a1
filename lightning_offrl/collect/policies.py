"""The behaviour policies shipped with the package, and the export of new ones from a SAC run.

D4RL's policy-based locomotion datasets come from one online SAC run per environment
(:mod:`lightning_offrl.collect.sac_online`): *medium* is the run stopped early at about a third of the
expert return, *expert* is the fully trained policy, and *medium-replay* is what the run collected up
to the medium checkpoint. What ships under ``lightning_offrl/assets/policies/`` is, per environment:

* ``<env>/medium.pt`` and ``<env>/expert.pt``: one float32 tanh-Gaussian actor each (~0.3 MB);
* ``<env>/medium_replay.pt``: the actors that acted in the run before the medium checkpoint, one every
  ``snapshot_every`` environment steps, with the step at which each took over;
* ``manifest.json``: for every file the training step, measured returns, normalized score, seed and
  training wall time.

The folder can be replaced by setting ``LIGHTNING_OFFRL_POLICY_DIR`` (same layout), e.g. to test
policies that are not shipped.

Export, after (or while) ``scripts/train_behaviour_policies.sh`` trains::

    python -m lightning_offrl.collect.policies export --env hopper --run /work/runs/behaviour/hopper [--expert]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np

from lightning_offrl.envs.evaluation import Policy, evaluate_policy
from lightning_offrl.envs.tasks import get_task, make_env
from lightning_offrl.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    import torch
    
    from lightning_offrl.networks import TanhGaussianActor

# torch (and the networks built on it) is imported inside the functions that run policies: importing
# this module registers the recipes, which `lightning_offrl datasets list` needs without torch.

POLICY_DIR_ENV = "LIGHTNING_OFFRL_POLICY_DIR"
MANIFEST_FILE = "manifest.json"
ROLES = ("medium", "expert")
MEDIUM_REPLAY = "medium_replay"
TRAIN_SCRIPT = "scripts/train_behaviour_policies.sh"

# Layout of a SAC run folder (written by lightning_offrl.collect.sac_online, read by the export below).
STATE_FILE = "state.pt"
EVALS_FILE = "evals.json"
ACTORS_DIR = "actors"


# ------------------------------------------------------------------------------------------ actor files
def action_to_env(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Maps actions in ``[-1, 1]^act_dim`` (what the actor and the data use) onto the env's bounds.

    Shapes: ``(..., act_dim) -> (..., act_dim)``; the identity for D4RL's locomotion tasks.
    """
    return space.low + 0.5 * (action + 1.0) * (space.high - space.low)


def deterministic_policy(actor: TanhGaussianActor, space: gym.spaces.Box) -> Policy:
    """The actor's mode ``tanh(mu(s))`` as a numpy policy ``(N, obs_dim) -> (N, act_dim)`` for evaluation."""
    import torch

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            action = actor.deterministic(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return action_to_env(action, space)

    return policy


def actor_checkpoint(actor: TanhGaussianActor, meta: dict[str, Any]) -> dict[str, Any]:
    """The small file format of a behaviour policy: float32 actor weights, their shapes and metadata."""
    import torch

    state_dict = {name: tensor.detach().to(torch.float32).clone() for name, tensor in actor.state_dict().items()}
    return {"state_dict": state_dict, **meta}


def load_evals(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The evaluation history of a run (``[]`` if it has not evaluated yet)."""
    path = Path(out_dir) / EVALS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def train_command(env: str, role: str) -> str:
    """How to produce a missing policy, for error messages and docs."""
    expert_flag = " --expert" if role == "expert" else ""
    return (
        f"`{TRAIN_SCRIPT}` (SAC runs in /work/runs/behaviour/<env>, resumable) followed by "
        f"`python -m lightning_offrl.collect.policies export --env {env} --run /work/runs/behaviour/{env}{expert_flag}`"
    )


@dataclass(frozen=True)
class PolicyInfo:
    """The manifest entry of a shipped medium or expert actor.

    Attributes:
        env: task domain (``hopper``).
        role: ``medium`` or ``expert``.
        file: path of the actor file relative to the policy folder.
        train_steps: environment steps of the SAC run at this checkpoint.
        eval_return: mean return of the deterministic actor (``tanh(mu(s))``) at export.
        sampled_return: mean return with actions sampled from the policy, as in the datasets.
        normalized_score: D4RL normalized score of ``sampled_return``.
        eval_episodes: episodes behind each of the two returns.
        seed: seed of the SAC run.
        train_wall_time_s: wall time of the SAC run up to this checkpoint.
        target_return: for ``medium``, the return it was chosen to be closest to (a third of the expert's).
        target_reference: where ``target_return`` came from (``expert policy`` or ``D4RL ref_max_score``).
        reached_target: for ``medium``, whether the run's evaluations had reached ``target_return`` at export;
            ``False`` marks a provisional policy from an unfinished run, weaker than D4RL's medium level.
    """

    env: str
    role: str
    file: str
    train_steps: int
    eval_return: float
    sampled_return: float
    normalized_score: float
    eval_episodes: int
    seed: int
    train_wall_time_s: float
    target_return: float | None = None
    target_reference: str | None = None
    reached_target: bool | None = None


@dataclass(frozen=True)
class ReplaySchedule:
    """Which policy acted when in the SAC run up to the medium checkpoint.

    Uniform random actions fill steps ``[0, random_steps)``; actor ``i`` acts from ``snapshot_steps[i]``
    up to the next snapshot, the last one up to ``end_step`` (the medium checkpoint).

    Attributes:
        env: task domain.
        file: path of the actor sequence relative to the policy folder.
        random_steps: uniform-action steps at the start of the run.
        snapshot_steps: environment step at which each actor took over, increasing.
        end_step: the medium checkpoint's step (the replay ends there).
        seed: seed of the SAC run.
    """

    env: str
    file: str
    random_steps: int
    snapshot_steps: tuple[int, ...]
    end_step: int
    seed: int

    def segment_lengths(self) -> list[int]:
        """Environment steps of the run per acting policy: ``[random, actor_0, actor_1, ...]``."""
        bounds = [*self.snapshot_steps, self.end_step]
        return [self.random_steps] + [bounds[i + 1] - bounds[i] for i in range(len(self.snapshot_steps))]


# ------------------------------------------------------------------------------------------ reading
def policy_dir() -> Traversable:
    """The folder holding ``manifest.json``: ``$LIGHTNING_OFFRL_POLICY_DIR`` or the package's assets."""
    override = os.environ.get(POLICY_DIR_ENV)
    if override:
        return Path(override)
    return resources.files("lightning_offrl").joinpath("assets", "policies")


def load_manifest(directory: Traversable | None = None) -> dict[str, Any]:
    """The manifest (``{"format": 1, "policies": {env: {role: entry}}}``); empty if nothing ships."""
    manifest = (directory or policy_dir()).joinpath(MANIFEST_FILE)
    if not manifest.is_file():
        return {"format": 1, "policies": {}}
    return json.loads(manifest.read_text())


def shipped_policies(directory: Traversable | None = None) -> dict[str, list[str]]:
    """``{env: [roles...]}`` of everything shipped (roles include ``medium_replay``)."""
    return {env: sorted(entries) for env, entries in load_manifest(directory)["policies"].items()}


def _entry(env: str, role: str, directory: Traversable | None) -> dict[str, Any]:
    entries = load_manifest(directory)["policies"].get(env, {})
    if role not in entries:
        what = "medium-replay actor sequence" if role == MEDIUM_REPLAY else f"{role} policy"
        shipped = ", ".join(f"{e} {'/'.join(sorted(r))}" for e, r in shipped_policies(directory).items()) or "none"
        needs = "medium" if role == MEDIUM_REPLAY else role
        raise DatasetError(
            f"{env} {what} is not shipped yet (shipped: {shipped}); train it with {train_command(env, needs)}, "
            f"or supply the D4RL file with --data.path"
        )
    return entries[role]


def policy_info(env: str, role: str, directory: Traversable | None = None) -> PolicyInfo:
    """The manifest entry of ``env``'s ``role`` policy.

    Raises:
        DatasetError: the policy is not shipped; the message says how to train it or what to supply instead.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    entry = _entry(env, role, directory)
    return PolicyInfo(**{key: entry[key] for key in PolicyInfo.__dataclass_fields__ if key in entry})


def replay_schedule(env: str, directory: Traversable | None = None) -> ReplaySchedule:
    """The medium-replay schedule of ``env`` (raises :class:`DatasetError` if not shipped)."""
    entry = dict(_entry(env, MEDIUM_REPLAY, directory))
    entry["snapshot_steps"] = tuple(entry["snapshot_steps"])
    return ReplaySchedule(**{key: entry[key] for key in ReplaySchedule.__dataclass_fields__})


def policy_files(env: str, roles: Sequence[str], directory: Traversable | None = None) -> list[Traversable]:
    """The shipped files of ``env``'s ``roles`` (``medium``, ``expert``, ``medium_replay``), in order.

    Raises:
        DatasetError: one of them is not shipped.
    """
    directory = directory or policy_dir()
    return [_shipped_file(directory, _entry(env, role, directory)["file"]) for role in roles]


def _shipped_file(directory: Traversable, relative: str) -> Traversable:
    """A file the manifest lists; :class:`DatasetError` if it is not in the policy folder."""
    path = directory.joinpath(*relative.split("/"))
    if not path.is_file():
        raise DatasetError(f"{relative} is listed in {MANIFEST_FILE} of {directory} but missing; reinstall the package")
    return path


def _load_file(directory: Traversable, relative: str) -> dict[str, Any]:
    import torch

    with _shipped_file(directory, relative).open("rb") as handle:
        return torch.load(handle, weights_only=True, map_location="cpu")


def actor_from_state(state: dict[str, Any], obs_dim: int, act_dim: int, hidden_dims: Sequence[int]) -> TanhGaussianActor:
    """A float32 :class:`TanhGaussianActor` in eval mode with the given weights."""
    from lightning_offrl.networks import TanhGaussianActor

    actor = TanhGaussianActor(obs_dim, act_dim, tuple(hidden_dims))
    actor.load_state_dict(state)
    return actor.eval().requires_grad_(False)


def load_behaviour_policy(env: str, role: str, directory: Traversable | None = None) -> tuple[TanhGaussianActor, PolicyInfo]:
    """The shipped ``medium`` or ``expert`` actor of ``env`` and its manifest entry.

    Raises:
        DatasetError: not shipped (the message names the training command and the alternative).
    """
    directory = directory or policy_dir()
    info = policy_info(env, role, directory)
    checkpoint = _load_file(directory, info.file)
    actor = actor_from_state(checkpoint["state_dict"], checkpoint["obs_dim"], checkpoint["act_dim"],
                             checkpoint["hidden_dims"])
    return actor, info


def load_replay_actors(env: str, directory: Traversable | None = None) -> tuple[list[TanhGaussianActor], ReplaySchedule]:
    """The actors that acted before ``env``'s medium checkpoint, in order, and their schedule."""
    directory = directory or policy_dir()
    schedule = replay_schedule(env, directory)
    blob = _load_file(directory, schedule.file)
    actors = [actor_from_state(state, blob["obs_dim"], blob["act_dim"], blob["hidden_dims"])
              for state in blob["state_dicts"]]
    if len(actors) != len(schedule.snapshot_steps):
        raise DatasetError(
            f"{schedule.file} holds {len(actors)} actors but {MANIFEST_FILE} lists {len(schedule.snapshot_steps)} "
            "snapshot steps; export the policies again"
        )
    return actors, schedule


# ------------------------------------------------------------------------------------------ export
def _read_actor_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, weights_only=True, map_location="cpu")


def _same_weights(a: Sequence[dict[str, torch.Tensor]], b: Sequence[dict[str, torch.Tensor]]) -> bool:
    """Whether two sequences of actor state dicts hold the same tensors, bit for bit."""
    import torch

    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[name], y[name]) for name in x) for x, y in zip(a, b)
    )


def _keep_or_write(path: Path, obj: dict[str, Any], state_dicts: Any) -> dict[str, Any]:
    """Writes ``obj`` to ``path`` unless the file there already holds the same weights; returns what is there.

    A re-export (e.g. the expert's, which re-chooses the medium checkpoint) that lands on the actors
    already shipped keeps their files byte for byte: the replicas cached from them record the files'
    SHA-256 and stay valid, and the recorded training wall time stays the one of the shipped file.
    """
    import torch

    if path.is_file():
        shipped = _read_actor_checkpoint(path)
        if _same_weights(state_dicts(shipped), state_dicts(obj)):
            return shipped
    torch.save(obj, path)
    return obj


def measure_policy(actor: TanhGaussianActor, env: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean returns of the deterministic actor and of sampled actions, ``episodes`` episodes each.

    Sampling uses one generator per call seeded with ``seed`` (episode ``i`` resets with ``seed + i``).
    """
    import torch

    space = make_env(env).action_space
    deterministic = evaluate_policy(deterministic_policy(actor, space), env, episodes, seed=seed).returns
    generator = torch.Generator().manual_seed(seed)

    def sampled(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            action = actor.sample(torch.as_tensor(obs, dtype=torch.float32), generator)[0].numpy()
        return action_to_env(action, space)

    stochastic = evaluate_policy(sampled, env, episodes, seed=seed).returns
    return float(deterministic.mean()), float(stochastic.mean())


def choose_medium_step(evals: Sequence[dict[str, Any]], target_return: float) -> int:
    """D4RL's early stop: the evaluated checkpoint closest to ``target_return`` up to the first one that reaches it.

    Later checkpoints are not considered even if one happens to be closer: the medium policy is the run
    *stopped early*, and medium-replay is the data before it.

    Args:
        evals: the run's evaluation records (``step``, ``eval_return``), in step order, each with a checkpoint.
        target_return: a third of the expert return.

    Returns:
        The chosen checkpoint's step.
    """
    if not evals:
        raise DatasetError("the run has no evaluated checkpoints yet; train longer before exporting")
    candidates = []
    for record in evals:
        candidates.append(record)
        if record["eval_return"] >= target_return:
            break
    best = min(candidates, key=lambda record: abs(record["eval_return"] - target_return))
    return int(best["step"])


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / MANIFEST_FILE)


def export_run(
    run_dir: str | os.PathLike[str],
    env: str,
    out_dir: str | os.PathLike[str] | None = None,
    expert: bool = False,
    snapshot_every: int = 20_000,
    eval_episodes: int = 10,
    eval_seed: int = 1_000_003,
    keep_medium: bool = False,
) -> dict[str, Any]:
    """Writes the medium actor, the medium-replay actor sequence and (with ``expert``) the expert actor.

    The expert is the run's checkpoint with the highest evaluated return; the medium checkpoint is chosen
    by :func:`choose_medium_step` with a target of a third of the expert's deterministic return, or of
    D4RL's ``ref_max_score`` when no expert is exported or shipped yet (the manifest records which).
    Every exported actor is measured again with ``eval_episodes`` fresh episodes, deterministic and sampled.

    Args:
        run_dir: the SAC run's folder (``evals.json``, ``actors/``, ``state.pt``).
        env: its task domain.
        out_dir: the policy folder to write into (default: the package's ``assets/policies``).
        expert: also export the expert (only when the run is trained to completion).
        snapshot_every: environment steps between the actors kept for medium-replay; a multiple of the
            run's actor checkpoint interval.
        eval_episodes: episodes per measured return.
        eval_seed: seed of those episodes.
        keep_medium: with ``expert``, leave the shipped medium and medium-replay as they are (their
            manifest entries keep the target they were chosen against) instead of choosing them again
            against the new expert: for an expert trained short of D4RL's, whose third would move the
            medium below D4RL's level and change every replica and result built on it.

    Returns:
        The manifest entries written for ``env``.
    """
    run = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(str(resources.files("lightning_offrl"))) / "assets" / "policies"
    (out / env).mkdir(parents=True, exist_ok=True)
    evals = [record for record in load_evals(run) if (run / ACTORS_DIR / f"actor_{record['step']:08d}.pt").exists()]
    if not evals:
        raise DatasetError(f"{run} has no evaluated actor checkpoints; train it with {TRAIN_SCRIPT} first")
    config = json.loads((run / "config.json").read_text())
    task = get_task(env)
    manifest = load_manifest(out)
    entries: dict[str, Any] = dict(manifest["policies"].get(env, {}))

    def export_actor(step: int, role: str, extra: dict[str, Any]) -> dict[str, Any]:
        checkpoint = _read_actor_checkpoint(run / ACTORS_DIR / f"actor_{step:08d}.pt")
        actor = actor_from_state(checkpoint["state_dict"], checkpoint["obs_dim"], checkpoint["act_dim"],
                                 checkpoint["hidden_dims"])
        eval_return, sampled_return = measure_policy(actor, env, eval_episodes, eval_seed)
        checkpoint = _keep_or_write(out / env / f"{role}.pt", checkpoint, lambda c: [c["state_dict"]])
        info = PolicyInfo(
            env=env, role=role, file=f"{env}/{role}.pt", train_steps=step, eval_return=round(eval_return, 2),
            sampled_return=round(sampled_return, 2),
            normalized_score=round(float(task.normalized_score(sampled_return)), 2), eval_episodes=eval_episodes,
            seed=int(config["seed"]), train_wall_time_s=float(checkpoint["wall_time_s"]), **extra,
        )
        return asdict(info)

    if keep_medium and not (expert and "medium" in entries and MEDIUM_REPLAY in entries):
        raise ConfigError("keep_medium exports an expert beside a shipped medium: pass expert=True (--expert), "
                          f"and export {env}'s medium first (without --keep-medium)")
    if expert:
        best = max(evals, key=lambda record: record["eval_return"])
        entries["expert"] = export_actor(int(best["step"]), "expert", {})
    if keep_medium:
        return _write_entries(out, manifest, env, entries, run, config, evals)
    if "expert" in entries:
        target, reference = entries["expert"]["eval_return"] / 3.0, "expert policy"
    else:
        target, reference = task.ref_max_score / 3.0, "D4RL ref_max_score"
    medium_step = choose_medium_step(evals, target)
    reached_target = any(record["eval_return"] >= target for record in evals)
    entries["medium"] = export_actor(
        medium_step, "medium",
        {"target_return": round(target, 2), "target_reference": reference, "reached_target": reached_target},
    )

    random_steps = int(config["random_steps"])
    snapshot_steps = list(range(random_steps, medium_step, snapshot_every))
    missing = [s for s in snapshot_steps if not (run / ACTORS_DIR / f"actor_{s:08d}.pt").exists()]
    if missing:
        raise DatasetError(
            f"{run / ACTORS_DIR} lacks the actors of steps {missing[:5]}: snapshot_every ({snapshot_every}) must be "
            f"a multiple of the run's actor checkpoint interval ({config['actor_checkpoint_every']}), starting "
            f"at its random_steps ({random_steps})"
        )
    snapshots = [_read_actor_checkpoint(run / ACTORS_DIR / f"actor_{s:08d}.pt") for s in snapshot_steps]
    blob = {
        "env": env,
        "obs_dim": snapshots[0]["obs_dim"] if snapshots else None,
        "act_dim": snapshots[0]["act_dim"] if snapshots else None,
        "hidden_dims": snapshots[0]["hidden_dims"] if snapshots else list(config["hidden_dims"]),
        "state_dicts": [snapshot["state_dict"] for snapshot in snapshots],
    }
    _keep_or_write(out / env / f"{MEDIUM_REPLAY}.pt", blob, lambda b: b["state_dicts"])
    entries[MEDIUM_REPLAY] = asdict(ReplaySchedule(
        env=env, file=f"{env}/{MEDIUM_REPLAY}.pt", random_steps=random_steps, snapshot_steps=tuple(snapshot_steps),
        end_step=medium_step, seed=int(config["seed"]),
    ))
    entries[MEDIUM_REPLAY]["snapshot_steps"] = list(snapshot_steps)
    return _write_entries(out, manifest, env, entries, run, config, evals)


def _write_entries(out: Path, manifest: dict[str, Any], env: str, entries: dict[str, Any], run: Path,
                   config: dict[str, Any], evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Records ``env``'s entries and the run's progress in the manifest of ``out``; returns the entries."""
    import torch

    run_steps = max(int(record["step"]) for record in evals)
    if (run / STATE_FILE).exists():
        run_steps = int(torch.load(run / STATE_FILE, weights_only=False, map_location="cpu")["counters"]["env_steps"])
    manifest["policies"][env] = entries
    manifest.setdefault("runs", {})[env] = {
        "steps_at_export": run_steps, "total_steps": int(config["total_steps"]),
        "finished": run_steps >= int(config["total_steps"]), "seed": int(config["seed"]),
    }
    _write_manifest(out, manifest)
    return entries


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lightning_offrl.collect.policies {list,export}``."""
    import torch

    parser = argparse.ArgumentParser(prog="python -m lightning_offrl.collect.policies",
                                     description="Shipped behaviour policies: list them, or export them from a SAC run.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="what is shipped, with returns and training steps")
    export = commands.add_parser("export", help="write medium, medium-replay (and expert) actors from a SAC run")
    export.add_argument("--env", required=True)
    export.add_argument("--run", required=True, help="the SAC run folder (e.g. /work/runs/behaviour/hopper)")
    export.add_argument("--out", default=None, help="policy folder (default: the package's assets/policies)")
    export.add_argument("--expert", action="store_true", help="also export the expert (run trained to completion)")
    export.add_argument("--keep-medium", action="store_true",
                        help="with --expert: keep the shipped medium and medium-replay instead of choosing them "
                             "again against a third of the new expert's return")
    export.add_argument("--snapshot-every", type=int, default=20_000)
    export.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "export":
        entries = export_run(args.run, args.env, args.out, expert=args.expert, snapshot_every=args.snapshot_every,
                             eval_episodes=args.eval_episodes, keep_medium=args.keep_medium)
        print(json.dumps(entries, indent=2))
        return
    for env, entries in load_manifest()["policies"].items():
        for role in ROLES:
            if role in entries:
                e = entries[role]
                print(f"{env:12s} {role:7s} step {e['train_steps']:>9,}  deterministic {e['eval_return']:8.1f}  "
                      f"sampled {e['sampled_return']:8.1f}  score {e['normalized_score']:6.1f}")
        if MEDIUM_REPLAY in entries:
            e = entries[MEDIUM_REPLAY]
            print(f"{env:12s} replay  {len(e['snapshot_steps'])} actors up to step {e['end_step']:,}")


if __name__ == "__main__":
    main()
