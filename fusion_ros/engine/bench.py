"""Inference bench: median latency, FPS and peak memory of one backend and model, in this process.

Inputs are real-sized random frames; the memory is carried from frame to frame, as in the node.
``python -m fusion_ros.engine.bench --one BACKEND MODEL ...`` prints :func:`bench_one`'s rows as JSON, so a caller
can time each backend in a process of its own (its peak memory its own, no other backend's thread pool).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np

__all__ = ["SIZES", "bench_one", "parse_hw"]

SIZES = ((480, 640), (768, 1024))


def parse_hw(text: str) -> tuple[int, int]:
    """``"480x640"`` -> (480, 640)."""
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 480x640, got '{text}'") from None
    return h, w


def bench_one(backend: str, model: str, sizes: list[tuple[int, int]], runs: int, warmup: int, precision: str,
              threads: int) -> list[dict]:
    """Time one backend/model over ``sizes`` in this process."""
    from fusion_ros.engine import EngineConfig, create_backend

    be = create_backend(EngineConfig(model_path=model, backend=backend, precision=precision, threads=threads))
    rng = np.random.default_rng(0)
    rows = []
    for h, w in sizes:
        t = rng.random((1, 1, h, w), dtype=np.float32)
        v = rng.random((1, 3, h, w), dtype=np.float32)
        be.reset_memory()
        for _ in range(warmup):
            be.infer(t, v)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            be.infer(t, v)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        row = {**be.describe(), "model": model, "height": h, "width": w, "runs": runs, "median_ms": round(med * 1e3, 2),
               "p90_ms": round(float(np.percentile(times, 90)) * 1e3, 2), "fps": round(1.0 / med, 1), "memory_on": True,
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        row.pop("model_path", None)
        if "cuda" in str(row.get("device", "")) or row["backend"] == "tensorrt":
            import torch

            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        rows.append(row)
    return rows


def _main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m fusion_ros.engine.bench")
    ap.add_argument("--one", nargs=2, required=True, metavar=("BACKEND", "MODEL"))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--sizes", nargs="+", type=parse_hw, default=list(SIZES))
    a = ap.parse_args(argv)
    print(json.dumps(bench_one(a.one[0], a.one[1], a.sizes, a.runs, a.warmup, a.precision, a.threads)))


if __name__ == "__main__":
    _main(sys.argv[1:])
