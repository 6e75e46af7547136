"""``fusion-ros bench``: the inference bench per backend, model and resolution, or one of the node benches.

Without a mode flag each (backend, model) runs :func:`fusion_ros.engine.bench.bench_one` in its own subprocess, so
its peak memory is its own and one backend's thread pool does not slow the next. ``--node``, ``--transport``,
``--keep-up``, ``--soak``, ``--startup`` and ``--uint8-io`` run the benches of this package instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

from fusion_ros.engine.bench import SIZES, parse_hw

__all__ = ["register", "machine_info"]


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import onnxruntime
        import torch

        info.update(torch=torch.__version__, onnxruntime=onnxruntime.__version__)
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def _run_isolated(args: argparse.Namespace, backend: str, model: str) -> list[dict]:
    cmd = [sys.executable, "-m", "fusion_ros.engine.bench", "--one", backend, model, "--runs", str(args.runs), "--warmup",
           str(args.warmup), "--precision", args.precision, "--threads", str(args.threads),
           "--sizes", *[f"{h}x{w}" for h, w in args.sizes]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return [{"backend": backend, "model": model, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}]
    return json.loads(proc.stdout)


def _spread(values: list[float], digits: int = 2) -> list[float]:
    return [round(min(values), digits), round(statistics.median(values), digits), round(max(values), digits)]


def _reported_ms_per_frame(stdout: str) -> float | None:
    """``ms_per_frame`` from the command's last output line when that line is a JSON object holding it."""
    lines = stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1]).get("ms_per_frame") if lines else None
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _time_command(cmd: str, frames: int) -> tuple[float, bool]:
    """Time per frame of one run of ``cmd`` (a shell command line), ms, and whether the command reported it.

    A command whose last output line is a JSON object with ``ms_per_frame`` (``fusion_ros.tools.ifcnn_peer``) timed
    its frames itself, without its start-up; otherwise it is the wall time of the run over ``frames``.
    """
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        from fusion_ros.errors import FusionError

        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FusionError(f"--compare-cmd {shlex.quote(cmd)} failed (rc={proc.returncode}): {tail[0]}")
    reported = _reported_ms_per_frame(proc.stdout)
    return (reported, True) if reported is not None else (dt * 1e3 / frames, False)


def _inference_rows(args: argparse.Namespace) -> dict:
    """Each (backend, model) in ``args.repeat`` fresh processes; with ``--compare-cmd`` that command is timed between
    them, in the same minutes, and each row gets the ratio of its median time to ours."""
    from fusion_ros.engine import available_backends

    backends = args.backends or [b for b in ("tensorrt", "onnxruntime", "torch") if b in available_backends()]
    runs: dict[tuple, list[dict]] = {}
    compare_ms: list[float] = []
    compare_reported: list[bool] = []
    for _ in range(args.repeat):
        for b in backends:
            for m in args.models:
                for row in _run_isolated(args, b, m):
                    runs.setdefault((b, m, row.get("height"), row.get("width")), []).append(row)
        if args.compare_cmd:
            ms, reported = _time_command(args.compare_cmd, args.compare_frames)
            compare_ms.append(ms)
            compare_reported.append(reported)
    rows = []
    for (b, m, h, w), group in runs.items():
        row = dict(group[-1])
        if "error" not in row and args.repeat > 1:
            medians = [r["median_ms"] for r in group]
            row["processes"] = len(group)
            row["median_ms_min_median_max"] = _spread(medians)
            row["median_ms"] = round(statistics.median(medians), 2)
            row["fps"] = round(1000.0 / row["median_ms"], 1)
            first = runs.get((b, args.models[0], h, w))
            if m != args.models[0] and first and len(first) == len(group) and all("error" not in r for r in first):
                # Each repeat runs the models one after the other, so the ratio of a pair has the machine's state of
                # those seconds in common; on a machine whose speed drifts it is steadier than either median.
                row["time_ratio_to_first_model"] = {"model": args.models[0], "per_repeat_min_median_max": _spread(
                    [r["median_ms"] / f["median_ms"] for r, f in zip(group, first)], 3)}
        if compare_ms and "error" not in row:
            row["compare_ratio"] = round(statistics.median(compare_ms) / row["median_ms"], 1)
        rows.append(row)
    result = {"machine": {**machine_info(), "load_average_1_5_15": list(os.getloadavg())}, "results": rows}
    if compare_ms:
        result["compare"] = {"command": args.compare_cmd, "runs": len(compare_ms),
                             "timing": ("ms_per_frame reported by the command" if all(compare_reported)
                                        else f"wall time per run / {args.compare_frames} frames"),
                             "ms_per_frame_min_median_max": _spread(compare_ms),
                             "note": "compare_ratio = the command's median time per frame / the row's median"}
    return result


def _stream_bench(args: argparse.Namespace) -> dict:
    from fusion_ros.config import parse_set_args
    from fusion_ros.ros.params import settings_from_values
    from fusion_ros.tools.stream_bench import run_stream_bench

    params = {**({"threads": args.threads} if args.threads else {}), **parse_set_args(args.set)}
    settings_from_values(params)        # a misspelt or invalid node parameter fails here, naming it
    if args.soak:
        run = run_stream_bench(rgb_hz=60.0, thermal_hz=30.0, duration_s=60.0 * args.minutes, node_params=params)
    else:
        run = run_stream_bench(rgb_hz=args.rate, thermal_hz=args.thermal_rate, duration_s=args.seconds,
                               node_params=params)
    return {"machine": {**machine_info(), "load_average_1_5_15": list(os.getloadavg())},
            "soak" if args.soak else "keep_up": run}


def cmd_bench(args: argparse.Namespace) -> int:
    if not args.models:
        from fusion_ros.engine import shipped_variants

        args.models = shipped_variants()
    if args.startup:
        from fusion_ros.tools.startup_bench import run_startup_bench

        result = {"machine": machine_info(), "startup": run_startup_bench(runs=args.runs_startup,
                                                                          python_path=args.python_path or None)}
        args.json = True
    elif args.keep_up or args.soak:
        result = _stream_bench(args)
        args.json = True
    elif args.transport:
        from fusion_ros.tools.transport_bench import DEFAULT_PROFILE, run_transport_bench

        profile = args.profile or DEFAULT_PROFILE
        settings = {"default": None, "shm_profile": profile}
        result = {"machine": {**machine_info(), "load_average_1_5_15": list(os.getloadavg())},
                  "transport": {name: run_transport_bench(frames=args.frames, rate_hz=args.rate, profile=prof)
                                for name, prof in settings.items()}}
        if args.through_node:
            result["through_node"] = {name: run_transport_bench(frames=args.frames, rate_hz=args.rate, profile=prof,
                                                                through_node=True)
                                      for name, prof in settings.items()}
        args.json = True        # the transport report is JSON only
    elif args.uint8_io:
        from fusion_ros.engine import resolve_model_path
        from fusion_ros.tools.uint8_io_bench import run_uint8_io_bench

        model = resolve_model_path(args.models[0])
        result = {"machine": {**machine_info(), "load_average_1_5_15": list(os.getloadavg())},
                  "uint8_io": [run_uint8_io_bench(str(model), (w, h), args.runs, args.warmup, args.threads)
                               for h, w in args.sizes]}
        args.json = True
    elif args.node:
        from fusion_ros.tools.node_bench import run_node_bench

        result = {"machine": machine_info(), "node": run_node_bench(frames=args.frames, model_path=args.node_model)}
    else:
        result = _inference_rows(args)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    else:
        for r in result.get("results", []):
            if "error" in r:
                print(f"{r['backend']:12s} {r['model']:8s} error: {r['error']}")
            else:
                spread = r.get("median_ms_min_median_max")
                extra = f"  (over {r['processes']} processes: {spread[0]}-{spread[2]} ms)" if spread else ""
                if "compare_ratio" in r:
                    extra += f"  {r['compare_ratio']}x faster than --compare-cmd"
                print(f"{r['backend']:12s} {r['model']:8s} {r['height']}x{r['width']:<5d} {r['median_ms']:8.2f} ms "
                      f"{r['fps']:7.1f} FPS{extra}")
        if "node" in result:
            print(json.dumps(result["node"], indent=2))
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, epilog examples kept line by line."""


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="median latency/FPS/peak memory per backend, model and size (or --node overhead)",
                              formatter_class=_Formatter,
                              epilog="examples:\n  fusion-ros bench --json\n  fusion-ros bench --models lite --backends onnxruntime --sizes 480x640\n"
                              "  fusion-ros bench --node --json\n  fusion-ros bench --transport --frames 150 --through-node\n"
                              "  fusion-ros bench --keep-up --threads 1\n  fusion-ros bench --keep-up --threads 1 --set inference_size=[320,240]\n  fusion-ros bench --soak --minutes 10 --threads 1\n"
                              "  fusion-ros bench --models lite --backends onnxruntime --sizes 480x640 --repeat 5\n"
                              "  fusion-ros bench --models lite --backends onnxruntime --sizes 480x640 --repeat 3 "
                              "--compare-cmd 'sleep 0.5' --compare-frames 1\n"
                              "  fusion-ros bench --models lite --backends onnxruntime --sizes 480x640 --repeat 5 "
                              "--compare-cmd 'python -m fusion_ros.tools.ifcnn_peer --frames 3'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", default="", help="also write the JSON to this file")
    p.add_argument("--models", nargs="+", default=None,
                   help="variant names or .onnx paths (default: the shipped models)")
    p.add_argument("--backends", nargs="+", default=None, choices=("tensorrt", "onnxruntime", "torch"),
                   help="default: every backend available here")
    p.add_argument("--sizes", nargs="+", type=parse_hw, default=list(SIZES), help="input sizes HxW")
    p.add_argument("--runs", type=int, default=50, help="timed runs per size (after warm-up)")
    p.add_argument("--repeat", type=int, default=1,
                   help="fresh processes per backend and model; > 1 reports min/median/max of their medians")
    p.add_argument("--compare-cmd", default="",
                   help="a shell command to time in the same run, between the repeats (e.g. another method's inference "
                        "script); each row gets the ratio of its time per frame to ours")
    p.add_argument("--compare-frames", type=int, default=1,
                   help="frames one run of --compare-cmd processes (unused when its last output line is JSON with "
                        "ms_per_frame, as python -m fusion_ros.tools.ifcnn_peer prints)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs per size")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="fp16 applies on GPU backends")
    p.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = all cores")
    p.add_argument("--node", action="store_true", help="benchmark the node's per-frame overhead (no network) instead")
    p.add_argument("--uint8-io", action="store_true",
                   help="the first of --models with uint8 image I/O inside the graph against the float graph plus "
                        "the node's conversions, on ONNX Runtime, per --sizes, instead")
    p.add_argument("--transport", action="store_true",
                   help="cross-process image transport, Fast DDS defaults vs the shipped SHM profile, instead")
    p.add_argument("--through-node", action="store_true",
                   help="with --transport: also player -> fusion node process -> recorder")
    p.add_argument("--profile", default="", help="Fast DDS profile for --transport (default: config/fastdds_shm.xml)")
    p.add_argument("--keep-up", action="store_true",
                   help="camera -> fusion node -> recorder, each its own process (640x480 RGB at --rate, thermal at "
                        "--thermal-rate, for --seconds): output rate, drops and latency against the network's speed")
    p.add_argument("--soak", action="store_true",
                   help="like --keep-up with RGB at 60 Hz and thermal at 30 Hz for --minutes: latency over time, RSS growth")
    p.add_argument("--minutes", type=float, default=10.0, help="duration of --soak")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="with --keep-up / --soak: a node parameter (the node's names), e.g. inference_size=[320,240]")
    p.add_argument("--startup", action="store_true",
                   help="ONNX Runtime node start-up: process start to 'engine ready', its RSS, whether torch loaded")
    p.add_argument("--runs-startup", type=int, default=5, help="node starts for --startup")
    p.add_argument("--python-path", default="", help="with --startup: PYTHONPATH of another checkout to compare")
    p.add_argument("--seconds", type=float, default=30.0, help="duration of --keep-up")
    p.add_argument("--thermal-rate", type=float, default=9.0, help="thermal rate for --keep-up, Hz")
    p.add_argument("--rate", type=float, default=30.0, help="publishing rate for --transport and --keep-up, Hz")
    p.add_argument("--frames", type=int, default=200, help="frames for --node and --transport")
    p.add_argument("--node-model", default="", help="model for --node (default: shipped lite)")
    p.set_defaults(func=cmd_bench)
