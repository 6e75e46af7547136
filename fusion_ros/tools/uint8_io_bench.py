"""``fusion-ros bench --uint8-io``: the student with 8-bit I/O inside the graph against the float graph plus the
node's own conversions, on the same frames, in alternating blocks in one process.

What the node does per frame: ``to_chw`` (RGB uint8 -> float) on its preparing thread, the float graph on the
network's thread, ``from_chw`` (float -> uint8) on its publishing thread. The variant
(:func:`fusion_ros.export.uint8_io.with_uint8_io`) runs all three on the network's thread. Reported: medians of
each part, the differences, and how far the two outputs differ (uint8 levels).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["run_uint8_io_bench"]

_BLOCK = 10     # frames per graph before switching to the other


def _record(times: dict[str, list[float]], keys: tuple[str, ...], stamps: tuple[float, ...]) -> None:
    for key, a, b in zip(keys, stamps, stamps[1:]):
        times[key].append((b - a) * 1e3)


def _session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _frames(size: tuple[int, int], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(thermal (1, 1, H, W) float32, RGB (H, W, 3) uint8) from the procedural night scene."""
    from fusion_ros.tools.scene import NightScene, SceneConfig

    w, h = size
    out = []
    for thermal, rgb, _ in NightScene(SceneConfig(rgb_size=(w, h), thermal_size=(w, h), frames=n, seed=4)):
        t = thermal.astype(np.float32) / 65535.0          # the scene renders it at (w, h) already
        out.append((t.reshape(1, 1, h, w), np.ascontiguousarray(rgb)))
    return out


def run_uint8_io_bench(model_path: str, size: tuple[int, int] = (640, 480), runs: int = 50, warmup: int = 10,
                       threads: int = 0) -> dict:
    """Time both graphs on the same frames, in alternating blocks of 10; returns a JSON-ready dict.

    Args:
        model_path: an exported student (``.onnx`` with its sidecar).
        size: (width, height).
        runs: timed frames per graph.
        warmup: untimed frames per graph first.
        threads: ONNX Runtime intra-op threads (0: ONNX Runtime's default, all cores).
    """
    import onnx

    from fusion_ros.export.uint8_io import FUSED_U8, VISIBLE_U8, with_uint8_io
    from fusion_ros.model.artifact import open_artifact
    from fusion_ros.pipeline.fuser import from_chw, to_chw

    artifact = open_artifact(model_path)
    model = onnx.load(model_path)
    float_graph = _session(model.SerializeToString(), threads)
    u8_graph = _session(with_uint8_io(model).SerializeToString(), threads)
    w, h = size
    s = artifact.stride
    mem_f = mem_u = np.zeros((1, artifact.memory_channels, -(-h // s), -(-w // s)), np.float32)
    times: dict[str, list[float]] = {"to_float": [], "float_graph": [], "to_uint8": [], "uint8_graph": []}
    frames = _frames(size, warmup + runs)
    outputs: dict[str, list[np.ndarray]] = {"float": [], "uint8": []}
    # Blocks of frames, alternating: drift hits both alike, and one graph's idle thread pool (ONNX Runtime's
    # threads spin for a while after a run) competes with the other's only at the start of a block.
    for start in range(0, len(frames), _BLOCK):
        block = list(enumerate(frames[start:start + _BLOCK], start))
        for i, (thermal, rgb) in block:
            t0 = time.perf_counter()
            visible = to_chw(rgb)
            t1 = time.perf_counter()
            fused, mem_f = float_graph.run(None, {"thermal": thermal, "visible": visible, "memory": mem_f})
            t2 = time.perf_counter()
            out = from_chw(fused)
            t3 = time.perf_counter()
            if i >= warmup:
                _record(times, ("to_float", "float_graph", "to_uint8"), (t0, t1, t2, t3))
                outputs["float"].append(out)
        for i, (thermal, rgb) in block:
            t0 = time.perf_counter()
            out, mem_u = u8_graph.run([FUSED_U8, "memory_out"], {"thermal": thermal, VISIBLE_U8: rgb[None],
                                                                  "memory": mem_u})
            t1 = time.perf_counter()
            if i >= warmup:
                _record(times, ("uint8_graph",), (t0, t1))
                outputs["uint8"].append(out[0])
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(outputs["float"], outputs["uint8"])]
    worst = max(int(d.max()) for d in diffs)
    differing = [float((d > 0).mean()) for d in diffs]
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    float_total = round(med["to_float"] + med["float_graph"] + med["to_uint8"], 3)
    return {"model": model_path, "size": [w, h], "runs": runs, "threads": threads, "median_ms": med,
            "float_graph_plus_conversions_ms": float_total,
            "network_thread_ms_change": round(med["uint8_graph"] - med["float_graph"], 3),
            "total_cpu_ms_change": round(med["uint8_graph"] - float_total, 3),
            "output_max_abs_diff_levels": worst, "output_pixels_differing": round(statistics.mean(differing), 6),
            "note": "the node runs to_float and to_uint8 on its preparing and publishing threads; the uint8 graph "
                    "moves them onto the network's thread (network_thread_ms_change)"}
