"""Dataset generation with D4RL's recipes.

Each recipe is a function ``(spec, seed, num_steps, progress) -> D4RL-layout arrays`` registered
for a dataset level with :func:`lightning_offrl.data.registry.register_replica_builder`:
``random`` here, ``medium``/``expert``/``medium-replay``/``medium-expert`` in
:mod:`lightning_offrl.collect.policy_replicas`, ``planner`` in :mod:`lightning_offrl.collect.maze2d` and
``fixed``/``diverse``/``play`` in :mod:`lightning_offrl.collect.antmaze`.

Importing the package registers nothing beyond ``random``; :func:`load_recipes` (called by the registry
the first time a builder is asked for) imports the recipe modules, which register themselves. Keeping
them out of the package import lets ``python -m lightning_offrl.collect.<module>`` run a module once.
"""

import importlib

from lightning_offrl.collect.random import build_random
from lightning_offrl.data.registry import register_replica_builder

register_replica_builder("random", build_random)

RECIPE_MODULES = ("policy_replicas", "maze2d", "antmaze")


def load_recipes() -> None:
    """Imports the recipe modules (each registers its levels on import; a second call does nothing)."""
    for name in RECIPE_MODULES:
        importlib.import_module(f"{__name__}.{name}")


__all__ = ["RECIPE_MODULES", "build_random", "load_recipes"]
