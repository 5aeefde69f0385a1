"""Environments: D4RL task names on Gymnasium, evaluation, and a toy task for tests."""

from lightning_offrl.envs import toy  # noqa: F401  (registers the pointgoal task)
from lightning_offrl.envs import mazes  # noqa: F401  (D4RL semantics for the antmaze/maze2d tasks)
from lightning_offrl.envs import adroit  # noqa: F401  (D4RL semantics for pen/door/hammer/relocate)
from lightning_offrl.envs import kitchen  # noqa: F401  (D4RL semantics for kitchen-complete/partial/mixed)
