"""Child processes of the benches: a role started as ``python -m <module> <role> ...``, its one-line JSON report,
its resident memory, and a stop that never leaves it running."""

from __future__ import annotations

import json
import subprocess
import sys

from fusion_ros.errors import FusionError

__all__ = ["spawn_role", "spawn_node", "last_json", "rss_mb", "terminate_process", "run_role"]


def spawn_role(module: str, args: list[str], env: dict, stdin: bool = False) -> subprocess.Popen:
    """Start ``python -m module *args`` with text pipes; ``stdin``: keep a pipe for a stop line."""
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def spawn_node(params: dict, env: dict, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
               cwd: str | None = None) -> subprocess.Popen:
    """Start ``python -m fusion_ros.ros.node`` with ``-p name:=value`` for each of ``params`` (lists as JSON)."""
    ros_args = [a for k, v in params.items() for a in ("-p", f"{k}:={json.dumps(v) if isinstance(v, list) else v}")]
    return subprocess.Popen([sys.executable, "-m", "fusion_ros.ros.node", "--ros-args", *ros_args], env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=True)


def last_json(out: str, err: str, what: str) -> dict:
    """The last line of ``out`` that is a JSON object; FusionError naming ``what``, with its stderr, if none."""
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise FusionError(f"{what} reported nothing; stderr:\n{err[-2000:]}")


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, MB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def terminate_process(proc: subprocess.Popen) -> None:
    """Stop a child process: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_role(roles: dict, args) -> int:
    """The child's side: run ``roles[args.role](args)`` in an initialised rclpy and print its report as one JSON line."""
    import rclpy

    rclpy.init()
    try:
        report = roles[args.role](args)
    finally:
        rclpy.try_shutdown()
    print(json.dumps(report))
    return 0
