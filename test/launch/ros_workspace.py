"""A colcon workspace of this repository in a temporary folder, and the commands the launch tests run on it.

Shared by conftest.py and the test modules of this folder (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "fusion_ros"


def tool(name: str) -> str | None:
    """An executable of this interpreter's environment (``.venv/bin`` need not be on PATH), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def base_env() -> dict[str, str]:
    """os.environ with this interpreter's bin folder on PATH and its prefix in the ament index, where the
    pip-installed ROS packages (rclpy, the message packages, launch_ros) register themselves."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
    return env


def run_checked(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float, what: str) -> str:
    """Run ``cmd``; on failure the assertion carries the tail of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}"
    return proc.stdout


def sourced_env(setup_bash: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment after ``source install/setup.bash``, as a user's shell has it."""
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    out = run_checked(["bash", "-c", f'. "{setup_bash}" && "{sys.executable}" -c "{dump}"'],
                      cwd=setup_bash.parent, env=env, timeout=60, what="sourcing the workspace")
    return json.loads(out.strip().splitlines()[-1])


@dataclass
class Workspace:
    """A colcon workspace in a temporary folder that built this repository."""

    root: Path
    prefix: Path                  # install/fusion_ros
    env: dict[str, str]           # sourced install/setup.bash

    def colcon(self, verb: str, *args: str) -> list[str]:
        """``colcon VERB`` on this workspace; the repository is the source and nothing is written into it."""
        return [tool("colcon"), "--log-base", str(self.root / "log"), verb, "--base-paths", str(REPO),
                "--build-base", str(self.root / "build"), "--install-base", str(self.root / "install"), *args]


def build_workspace(root: Path) -> Workspace:
    """``colcon build --packages-select fusion_ros`` of this repository into ``root``, then its sourced environment."""
    ws = Workspace(root=root, prefix=root / "install" / PACKAGE, env={})
    run_checked(ws.colcon("build", "--packages-select", PACKAGE), cwd=root, env=base_env(), timeout=600,
                what="colcon build")
    ws.env = sourced_env(root / "install" / "setup.bash", base_env())
    return ws
