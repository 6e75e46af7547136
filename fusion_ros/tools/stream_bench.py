"""Keep-up and soak benchmark: two cameras in one process, the fusion node in another, a recorder in a third.

The player publishes RGB (``width``x``height`` bgr8) at ``rgb_hz`` and mono16 320x256 thermal at ``thermal_hz`` for
``duration_s``, each stamped with the system clock when sent; ``python -m fusion_ros.ros.node`` fuses; the recorder
notes the receive time of every fused frame and the node's /diagnostics. All processes use the shipped Fast DDS
shared-memory profile. The parent samples the node's resident memory every second.

Reported (JSON): frames sent and answered, output rate, fused share, the node's drop counters, its median inference
time and the rate that allows (``1000 / inference_ms_median``), ``keep_up_ratio`` = output rate / min(camera rate,
that rate), stamp-to-receive latency p50/p95/max overall and per time window, and the node's RSS growth.

Used by ``fusion-ros bench --keep-up`` (30 Hz + 9 Hz, a short run) and ``fusion-ros bench --soak --minutes N``
(60 Hz + 30 Hz).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.tools.processes import last_json, rss_mb, run_role, spawn_node, spawn_role, terminate_process

__all__ = ["run_stream_bench"]

MODULE = "fusion_ros.tools.stream_bench"
PROFILE = str(Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml")
STARTUP_TIMEOUT_S = 90.0
SETTLE_S = 2.0              # after the node is up, before measuring (discovery, first-frame allocations)


def _env(domain_id: int) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1",
               FASTDDS_DEFAULT_PROFILES_FILE=PROFILE, FASTRTPS_DEFAULT_PROFILES_FILE=PROFILE)
    return env


def _report(proc: subprocess.Popen, what: str, timeout: float, stop: bool = False) -> dict:
    try:
        out, err = proc.communicate(input="stop\n" if stop else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return last_json(out, err, f"stream benchmark: the {what} (rc={proc.returncode})")


def run_stream_bench(rgb_hz: float = 30.0, thermal_hz: float = 9.0, duration_s: float = 20.0, width: int = 640,
                     height: int = 480, node_params: dict | None = None, window_s: float = 60.0) -> dict:
    """Run player -> node -> recorder for ``duration_s`` and report rates, drops, latency and memory.

    Args:
        rgb_hz, thermal_hz: camera rates, Hz (> 0).
        duration_s: measured time, s.
        width, height: RGB size (the thermal is 320x256).
        node_params: fusion node parameters (name -> value), e.g. ``{"threads": 1}``.
        window_s: length of the time windows of the latency-over-time table, s.
    """
    if rgb_hz <= 0 or thermal_hz <= 0 or duration_s <= 0:
        raise ConfigError("rgb_hz, thermal_hz and duration_s must be > 0")
    # 215-232: domain ids the tests (1-200) never pick, so a run never sees a test's cameras.
    env = _env(random.randint(215, 232))
    params = {"diagnostics_period_s": 1.0, **(node_params or {})}
    common = ["--rgb-hz", str(rgb_hz), "--thermal-hz", str(thermal_hz), "--duration", str(duration_s),
              "--width", str(width), "--height", str(height)]
    procs: list[subprocess.Popen] = []
    rss: list[tuple[float, float]] = []
    try:
        node = spawn_node(params, env)
        procs.append(node)
        rec = spawn_role(MODULE, ["recorder", *common], env, stdin=True)
        procs.append(rec)
        player = spawn_role(MODULE, ["player", *common], env)
        procs.append(player)
        sampling = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not sampling.wait(1.0):
                m = rss_mb(node.pid)
                if m is not None:
                    rss.append((time.monotonic() - t0, m))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent = _report(player, "player", STARTUP_TIMEOUT_S + duration_s + 60)
        time.sleep(2.5)         # frames still in flight, then one more diagnostics period
        received = _report(rec, "recorder", 60, stop=True)
        sampling.set()
        if node.poll() is not None:
            raise FusionError(f"stream benchmark: the fusion node exited (rc={node.returncode}):\n"
                              f"{node.stderr.read()[-2000:]}")
    finally:
        for p in reversed(procs):
            terminate_process(p)
    return _summary(sent, received, rss, rgb_hz, thermal_hz, width, height, params, window_s)


def _summary(sent: dict, received: dict, rss: list, rgb_hz: float, thermal_hz: float, width: int, height: int,
             params: dict, window_s: float) -> dict:
    stamps = sent["rgb_stamps_ns"]
    got = received["received_by_stamp"]
    t_first = stamps[0]
    lat = [(got[str(s)] - s) * 1e-6 for s in stamps if str(s) in got]
    when = [(s - t_first) * 1e-9 for s in stamps if str(s) in got]
    span = (stamps[-1] - stamps[0]) * 1e-9
    node = received["node_status"]
    inf_ms = float(node.get("inference_ms_median", "nan"))
    sustainable = 1000.0 / inf_ms if inf_ms == inf_ms and inf_ms > 0 else float("nan")
    out_rate = (len(lat) - 1) / span if span > 0 and lat else 0.0
    windows = []
    for w0 in np.arange(0.0, max(span, 1e-9), window_s):
        sel = [lt for lt, t in zip(lat, when) if w0 <= t < w0 + window_s]
        if sel:
            windows.append({"t0_s": round(float(w0), 1), "frames": len(sel),
                            "latency_ms_p50": round(float(np.percentile(sel, 50)), 1),
                            "latency_ms_p95": round(float(np.percentile(sel, 95)), 1),
                            "latency_ms_max": round(float(np.max(sel)), 1)})

    def pct(q):
        return round(float(np.percentile(lat, q)), 1) if lat else None

    rss_mb = [m for _, m in rss]
    # Growth after start-up: the first samples include the engine load.
    steady = [m for t, m in rss if t >= 15.0] or rss_mb
    return {
        "benchmark": "stream_keep_up",
        "rgb_hz": rgb_hz, "thermal_hz": thermal_hz, "duration_s": round(span, 1), "size": [width, height],
        "rgb_sent": len(stamps), "thermal_sent": sent["thermal_sent"], "answered": len(lat),
        "output_rate_hz": round(out_rate, 2),
        "fused_frames": int(node.get("fused_frames", 0)), "passthrough_frames": int(node.get("passthrough_frames", 0)),
        "dropped_frames": int(node.get("dropped_frames", 0)),
        "unaccounted_rgb": len(stamps) - len(lat) - int(node.get("dropped_frames", 0)),
        "inference_ms_median": inf_ms, "network_rate_hz": round(sustainable, 2),
        "keep_up_ratio": round(out_rate / min(rgb_hz, sustainable), 3) if sustainable == sustainable else None,
        "latency_ms_p50": pct(50), "latency_ms_p95": pct(95), "latency_ms_max": pct(100),
        "latency_bound_ms": round(2 * inf_ms + 1000 * float(params.get("sync_max_wait_s", 0.1)), 1),
        "latency_over_time": windows,
        "rss_mb_first": round(rss_mb[0], 1) if rss_mb else None, "rss_mb_last": round(rss_mb[-1], 1) if rss_mb else None,
        "rss_growth_mb": round(steady[-1] - steady[0], 1) if steady else None,
        "node": node, "node_parameters": params, "cpu_count": os.cpu_count(),
        "load_average_1_5_15": list(os.getloadavg()),
    }


# -- roles (separate processes) ---------------------------------------------------------------------------------

def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.05)
    return cond()


def _role_player(a: argparse.Namespace) -> dict:
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image

    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.tools.scene import NightScene, SceneConfig
    from fusion_ros.tools.player import DRIVER_QOS, camera_info_msg, image_msg

    scene = list(NightScene(SceneConfig(rgb_size=(a.width, a.height), thermal_size=(320, 256), frames=16)))
    rgb = [image_msg(ic.from_rgb(r, "bgr8"), "bgr8", "rgb_camera") for _, r, _ in scene]
    th = [image_msg(t, "mono16", "thermal_camera") for t, _, _ in scene]
    node = rclpy.create_node("stream_bench_player")
    pub_rgb = node.create_publisher(Image, "rgb/image_raw", DRIVER_QOS)
    pub_info = node.create_publisher(CameraInfo, "rgb/camera_info", DRIVER_QOS)
    pub_th = node.create_publisher(Image, "thermal/image_raw", DRIVER_QOS)
    info = camera_info_msg(a.width, a.height, "rgb_camera")
    if not _wait(lambda: pub_rgb.get_subscription_count() >= 1 and pub_th.get_subscription_count() >= 1
                 and node.count_subscribers("fused/image_raw") >= 1, STARTUP_TIMEOUT_S):
        raise FusionError("player: the fusion node or the recorder did not come up within the start-up timeout")
    time.sleep(SETTLE_S)
    events = sorted([(i / a.rgb_hz, 0, i) for i in range(int(a.duration * a.rgb_hz))]
                    + [(j / a.thermal_hz, 1, j) for j in range(int(a.duration * a.thermal_hz))])
    t0 = time.monotonic()
    stamps, n_th = [], 0
    for at, kind, i in events:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time_ns()
        msg = (rgb if kind == 0 else th)[i % len(rgb)]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        if kind == 0:
            info.header = msg.header
            pub_info.publish(info)
            pub_rgb.publish(msg)
            stamps.append(now)
        else:
            pub_th.publish(msg)
            n_th += 1
    node.destroy_node()
    return {"rgb_stamps_ns": stamps, "thermal_sent": n_th}


def _role_recorder(a: argparse.Namespace) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    node = rclpy.create_node("stream_bench_recorder")
    by_stamp, status = {}, {}

    def image(msg: Image) -> None:
        by_stamp[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = time.time_ns()

    def diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith("fusion_node"):
                status.clear()
                status.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(Image, "fused/image_raw", image,
                             QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", diag, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    sys.stdin.readline()
    ex.shutdown(timeout_sec=2.0)
    return {"received_by_stamp": by_stamp, "node_status": status}


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusion_ros.tools.stream_bench")
    ap.add_argument("role", choices=("player", "recorder"))
    ap.add_argument("--rgb-hz", type=float, default=30.0)
    ap.add_argument("--thermal-hz", type=float, default=9.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    return run_role({"player": _role_player, "recorder": _role_recorder}, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
