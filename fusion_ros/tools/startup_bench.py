"""Node start-up benchmark: process start to "engine ready", the node's resident memory then, and whether torch
was loaded (its shared library mapped into the process).

Used by ``fusion-ros bench --startup``. ``python_path`` runs another checkout's node the same way (to compare
two versions on one machine in one run).
"""

from __future__ import annotations

import os
import random
import subprocess
import time

import numpy as np

from fusion_ros.errors import FusionError
from fusion_ros.tools.processes import rss_mb, spawn_node, terminate_process

__all__ = ["run_startup_bench"]

READY = "engine ready"


def _torch_mapped(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return any("libtorch" in line for line in f)


def _one(backend: str, python_path: str | None, timeout_s: float) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), PYTHONUNBUFFERED="1")
    if python_path:
        env["PYTHONPATH"] = python_path
    t0 = time.monotonic()
    # ``-m`` puts the working directory first on sys.path: run from the checkout under test.
    proc = spawn_node({"backend": backend}, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=python_path or None)
    try:
        for line in proc.stdout:
            if READY in line:
                ready_s = time.monotonic() - t0
                time.sleep(1.0)         # the first diagnostics and the subscriptions are set up
                return {"ready_s": round(ready_s, 3), "rss_mb": round(rss_mb(proc.pid), 1),
                        "torch_loaded": _torch_mapped(proc.pid)}
            if time.monotonic() - t0 > timeout_s:
                break
        raise FusionError(f"the node did not report '{READY}' within {timeout_s} s (rc={proc.poll()})")
    finally:
        terminate_process(proc)


def run_startup_bench(runs: int = 5, backend: str = "onnxruntime", python_path: str | None = None,
                      timeout_s: float = 120.0) -> dict:
    """Start the node ``runs`` times (each a fresh process) and report min/median/max of the start-up time and RSS."""
    rows = [_one(backend, python_path, timeout_s) for _ in range(runs)]
    ready = [r["ready_s"] for r in rows]
    rss = [r["rss_mb"] for r in rows]
    return {"benchmark": "node_startup", "backend": backend, "runs": runs, "python_path": python_path,
            "ready_s_min_median_max": [min(ready), round(float(np.median(ready)), 3), max(ready)],
            "rss_mb_min_median_max": [min(rss), round(float(np.median(rss)), 1), max(rss)],
            "torch_loaded": any(r["torch_loaded"] for r in rows), "load_average_1_5_15": list(os.getloadavg())}
