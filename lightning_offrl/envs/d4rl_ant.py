"""D4RL's antmaze ant on the official ``mujoco`` bindings.

D4RL's antmaze tasks and their goal-reaching collector simulate the ant of
``d4rl/locomotion/assets/ant.xml`` (loaded by ``d4rl/locomotion/ant.py`` with ``frame_skip=5`` and
wrapped in ``NormalizedBoxEnv``, ``d4rl/locomotion/wrappers.py``). Its body is Gymnasium's ``Ant``
body (same geoms, joints, ranges, armature, damping and density), but its physics is not:

============================ ========================================= ==============================
quantity                     D4RL's antmaze ant                        Gymnasium's ``Ant-v5``
============================ ========================================= ==============================
time step                    ``timestep="0.02"``, RK4                  ``0.01``, RK4
per environment step         ``frame_skip`` 5: 0.1 s                   5: 0.05 s
torque of action ``a``       ``ctrlrange -30..30``, gear 1, reached    ``ctrlrange -1..1``, gear 150:
                             through ``NormalizedBoxEnv``: ``30 a``    ``150 a``
contacts (geom default)      ``solref=".02 1" solimp=".8 .8 .01"``     MuJoCo's defaults
friction                     ``1 0.5 0.5``                             ``1 0.5 0.5``
============================ ========================================= ==============================

:func:`write_d4rl_ant_xml` writes Gymnasium's ``ant.xml`` with D4RL's values. The torque is
expressed as ``gear 30`` with ``ctrlrange -1..1``: MuJoCo's motor force is ``gear * ctrl``, so an
action ``a`` in ``[-1, 1]`` produces D4RL's ``30 a`` exactly, and actions keep the ``[-1, 1]``
range that D4RL's ``NormalizedBoxEnv`` exposed (it clipped its rescaled action to the control
range, as MuJoCo clamps ``ctrl`` here).

:func:`torso_up` and :func:`is_flipped` read how upright the torso is from the quaternion at
``qpos[3:7]``, the measure behind the replicas' fall statistics.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["D4RL_ANT", "AntPhysics", "write_d4rl_ant_xml", "torso_up", "is_flipped"]


@dataclass(frozen=True)
class AntPhysics:
    """The constants that make an ant D4RL's (sources: ``d4rl/locomotion/assets/ant.xml``, ``ant.py``).

    Attributes:
        timestep: MuJoCo's integration step in seconds.
        integrator: MuJoCo's integrator.
        frame_skip: integration steps per environment step.
        torque_limit: motor torque of a full action (``|a| = 1``).
        solref: the geoms' default contact ``solref``.
        solimp: the geoms' default contact ``solimp``.
        friction: the geoms' default friction.
    """

    timestep: float = 0.02
    integrator: str = "RK4"
    frame_skip: int = 5
    torque_limit: float = 30.0
    solref: tuple[float, ...] = (0.02, 1.0)
    solimp: tuple[float, ...] = (0.8, 0.8, 0.01)
    friction: tuple[float, ...] = (1.0, 0.5, 0.5)

    @property
    def dt(self) -> float:
        """Simulated seconds per environment step (D4RL: 0.1)."""
        return self.timestep * self.frame_skip


D4RL_ANT = AntPhysics()


def _numbers(values: tuple[float, ...]) -> str:
    return " ".join(f"{value:g}" for value in values)


def write_d4rl_ant_xml(folder: str | Path, nuserdata: int = 0, physics: AntPhysics = D4RL_ANT) -> Path:
    """Writes Gymnasium's ``ant.xml`` with D4RL's physics into ``folder``.

    Args:
        folder: where to write ``ant_d4rl.xml`` (it must exist).
        nuserdata: MuJoCo ``userdata`` slots to reserve (the goal-reaching task keeps its goal there).
        physics: the constants to apply (default D4RL's).

    Returns:
        The file's path. Build the environment with ``frame_skip=physics.frame_skip``.
    """
    import gymnasium.envs.mujoco

    source = Path(gymnasium.envs.mujoco.__file__).parent / "assets" / "ant.xml"
    tree = ET.parse(source)
    root = tree.getroot()
    option = root.find("option")
    if option is None:
        option = ET.SubElement(root, "option")
    option.set("timestep", f"{physics.timestep:g}")
    option.set("integrator", physics.integrator)
    geom_default = root.find("default/geom")
    if geom_default is None:
        raise ValueError(f"{source} has no <default><geom>: not Gymnasium's ant.xml")
    geom_default.set("solref", _numbers(physics.solref))
    geom_default.set("solimp", _numbers(physics.solimp))
    geom_default.set("friction", _numbers(physics.friction))
    motors = root.findall("actuator/motor")
    if len(motors) != 8:
        raise ValueError(f"{source} has {len(motors)} motors, the ant has 8")
    for motor in motors:
        motor.set("gear", f"{physics.torque_limit:g}")
        motor.set("ctrlrange", "-1.0 1.0")
        motor.set("ctrllimited", "true")
    if nuserdata:
        size = root.find("size")
        if size is None:
            size = ET.SubElement(root, "size")
        size.set("nuserdata", str(int(nuserdata)))
    path = Path(folder) / "ant_d4rl.xml"
    tree.write(path)
    return path


def torso_up(qpos: np.ndarray) -> np.ndarray:
    """``(...)`` the world-z component of the torso's own z axis: 1 upright, 0 on its side, -1 on its back.

    Args:
        qpos: ``(..., >=7)`` ant ``qpos`` (free joint quaternion ``w, x, y, z`` at ``3:7``; any norm).
    """
    quat = np.asarray(qpos, dtype=np.float64)[..., 3:7]
    quat = quat / np.maximum(np.linalg.norm(quat, axis=-1, keepdims=True), 1e-12)
    x, y = quat[..., 1], quat[..., 2]
    return 1.0 - 2.0 * (x * x + y * y)


def is_flipped(qpos: np.ndarray) -> np.ndarray:
    """``(...)`` bool: the torso's own z axis points below the horizon (the ant is on its back or side)."""
    return torso_up(qpos) < 0.0
