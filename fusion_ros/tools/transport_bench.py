"""Cross-process transport benchmark: best-effort images between separate processes, with and without the
shipped Fast DDS shared-memory profile (``config/fastdds_shm.xml``).

Every role runs as a fresh ``python -m fusion_ros.tools.transport_bench <role>`` subprocess with its own
environment, because Fast DDS reads its profile once per process, when the first participant is created:
the "default" setting removes every Fast DDS profile variable (Fast DDS's built-in transports: UDPv4 + a
512 KB shared-memory segment), the profile setting points ``FASTDDS_DEFAULT_PROFILES_FILE`` at the profile.

* ``through_node=False``: ``pub`` -> ``sub``. The publisher sends ``frames`` images (sensor-data QoS: best
  effort, depth 5) at ``rate_hz``, each stamped with the system clock just before ``publish``; the subscriber
  (sensor-data QoS) records the stamp and its own system-clock receive time. Both processes run on one host,
  so receive time minus stamp is the one-way latency (DDS + rclpy (de)serialisation + executor wake-up).
* ``through_node=True``: ``player`` (RGB + camera_info at ``rate_hz``, mono16 thermal at 9 Hz) ->
  ``python -m fusion_ros.ros.node`` -> ``recorder`` (fused/image_raw). Reported: the fraction of RGB frames
  that came back fused, the end-to-end stamp-to-receive latency at the recorder, and the node's own
  stamp-to-publish latency from its /diagnostics.

Used by ``fusion-ros bench --transport --json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.tools.processes import last_json, run_role, spawn_node, spawn_role, terminate_process

__all__ = ["run_transport_bench", "DEFAULT_PROFILE", "PROFILE_ENV_VARS"]

log = logging.getLogger(__name__)

MODULE = "fusion_ros.tools.transport_bench"
DEFAULT_PROFILE = str(Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml")
# Every variable through which Fast DDS picks up a profile or a transport setting; the "default" run unsets them.
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS",
                    "RMW_FASTRTPS_USE_QOS_FROM_XML")
WARMUP_FRAMES = 5           # sent before the measured ones, so discovery/first-segment costs are not counted
STARTUP_TIMEOUT_S = 60.0    # a loaded 2-core machine needs long to import rclpy/onnxruntime and load the engine
NODE_PARAMS = {"backend": "onnxruntime", "threads": 1, "inference_size": "[160,120]", "diagnostics_period_s": 0.5,
               "thermal_timeout_s": 5.0}


def _env(profile: str | None, domain_id: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV_VARS}
    env.update(ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1")
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = env["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile
    return env


def _stop(proc: subprocess.Popen, timeout: float = 30.0) -> tuple[str, str]:
    """Ask a stdin-controlled role to report (one line on stdin) and collect its output."""
    try:
        return proc.communicate(input="stop\n" if proc.stdin else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise FusionError(f"transport benchmark: a subprocess did not report in {timeout} s; stderr:\n{err[-2000:]}")


def _stats(sent: dict[int, int], got: dict[int, int], rate_hz: float) -> dict:
    """sent: frame -> stamp ns; got: frame -> receive ns (system clock of the same host)."""
    keys = [k for k in got if k in sent]
    lat = np.array([(got[k] - sent[k]) * 1e-6 for k in keys])
    recv = sorted(got[k] for k in keys)
    stamps = sorted(sent.values())
    span_rx = (recv[-1] - recv[0]) * 1e-9 if len(recv) > 1 else 0.0
    span_tx = (stamps[-1] - stamps[0]) * 1e-9 if len(stamps) > 1 else 0.0
    return {
        "frames_sent": len(sent), "frames_received": len(keys),
        "delivered_fraction": round(len(keys) / max(len(sent), 1), 4),
        # None (JSON null) when nothing arrived: strict JSON has no NaN.
        "latency_ms_median": round(float(np.median(lat)), 3) if keys else None,
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 3) if keys else None,
        "rate_hz_target": rate_hz,
        "rate_hz_sent": round((len(stamps) - 1) / span_tx, 2) if span_tx else 0.0,
        # Received frames over the sent span: a lossless link reads the sent rate, losses lower it.
        "rate_hz_effective": round((len(keys) - 1) / span_tx, 2) if span_tx and keys else 0.0,
        "receive_span_s": round(span_rx, 3),
    }


def run_transport_bench(frames: int = 150, rate_hz: float = 30.0, width: int = 640, height: int = 480,
                        encoding: str = "bgr8", profile: str | None = DEFAULT_PROFILE, through_node: bool = False,
                        node_params: dict | None = None) -> dict:
    """Publish images from one process to another and measure delivery, latency and rate.

    Args:
        frames: measured frames (after 5 warm-up ones), >= 2.
        rate_hz: publishing rate, Hz (> 0).
        width, height: image size, px.
        encoding: image encoding (any RGB encoding of the image codec; 3 bytes/px for bgr8/rgb8).
        profile: Fast DDS XML profile set in every process's environment; None = Fast DDS's defaults
            (every profile variable removed).
        through_node: player -> fusion node process -> recorder instead of publisher -> subscriber.
        node_params: fusion node parameters for ``through_node`` (default :data:`NODE_PARAMS`: small
            inference size and one thread, so that the node keeps up on a small CPU and the transport dominates).

    Returns:
        dict with ``frames_sent``, ``frames_received``, ``delivered_fraction``, ``latency_ms_median`` /
        ``latency_ms_p95`` (stamp to receive, ms), ``rate_hz_sent`` / ``rate_hz_effective``, the settings and,
        with ``through_node``, ``node`` (the node's diagnostics: stamp-to-publish latency, fused frames, ...).
    """
    if frames < 2:
        raise ConfigError(f"frames={frames}: need at least 2 measured frames; pass frames >= 2")
    if rate_hz <= 0:
        raise ConfigError(f"rate_hz={rate_hz}: must be > 0; pass e.g. rate_hz=30")
    if profile is not None and not Path(profile).is_file():
        raise ConfigError(f"profile={profile}: no such file; pass config/fastdds_shm.xml or None for the defaults")
    if profile is not None:
        profile = str(Path(profile).resolve())     # the subprocesses may resolve relative paths elsewhere
    domain_id = random.randint(1, 200)
    env = _env(profile, domain_id)
    common = ["--frames", str(frames), "--rate", str(rate_hz), "--width", str(width), "--height", str(height),
              "--encoding", encoding]
    settings = {"through_node": through_node, "profile": profile, "domain_id": domain_id, "width": width,
                "height": height, "encoding": encoding, "qos": "sensor_data (best effort, keep last 5)"}
    procs: list[subprocess.Popen] = []
    try:
        if not through_node:
            sub = spawn_role(MODULE, ["sub", *common], env, stdin=True)
            procs.append(sub)
            pub = spawn_role(MODULE, ["pub", *common], env)
            procs.append(pub)
            out, err = pub.communicate(timeout=STARTUP_TIMEOUT_S + frames / rate_hz + 30)
            sent_rep = last_json(out, err, "transport benchmark: the publisher process")
            time.sleep(0.5)     # the last frames in flight
            received = last_json(*_stop(sub), "transport benchmark: the subscriber process")
            result = _stats({int(k): v for k, v in sent_rep["sent"].items()},
                            {int(k): v for k, v in received["received"].items()}, rate_hz)
            result["malformed"] = received["malformed"]
            return {**result, **settings}

        params = {**NODE_PARAMS, **(node_params or {})}
        # The node's input queue is the sensor-data default (5): what the node drops under load is counted.
        node = spawn_node(params, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(node)
        rec = spawn_role(MODULE, ["recorder", *common], env, stdin=True)
        procs.append(rec)
        player = spawn_role(MODULE, ["player", *common], env)
        procs.append(player)
        out, err = player.communicate(timeout=STARTUP_TIMEOUT_S + frames / rate_hz + 30)
        sent_rep = last_json(out, err, "transport benchmark: the player process")
        time.sleep(2.0)     # frames still in the node, then one more diagnostics period
        received = last_json(*_stop(rec), "transport benchmark: the recorder process")
        if node.poll() is not None:
            raise FusionError(f"transport benchmark: the fusion node exited (rc={node.returncode}):\n"
                              f"{node.stdout.read()[-2000:]}")
        sent = {int(k): v for k, v in sent_rep["sent"].items()}
        by_stamp = received["received_by_stamp"]
        got = {k: by_stamp[str(s)] for k, s in sent.items() if str(s) in by_stamp}
        result = _stats(sent, got, rate_hz)
        result["malformed"] = received["malformed"]
        result["node"] = received["node_status"]
        result["node_parameters"] = params
        return {**result, **settings, "thermal": "mono16 320x256 @ 9 Hz"}
    finally:
        for p in reversed(procs):
            terminate_process(p)


# -- roles (each a separate process) -------------------------------------------------------------------------------

def _frames(width: int, height: int, encoding: str, n: int = 8):
    """A few frames of the procedural night scene (image content does not change the transport cost much, but
    real structure keeps any content-dependent transport behaviour in play)."""
    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.tools.scene import NightScene, SceneConfig
    from fusion_ros.tools.player import image_msg

    scene = list(NightScene(SceneConfig(rgb_size=(width, height), thermal_size=(320, 256), frames=n)))
    rgb = [image_msg(ic.from_rgb(r, encoding), encoding, "rgb_camera") for _, r, _ in scene]
    th = [image_msg(t, "mono16", "thermal_camera") for t, _, _ in scene]
    return rgb, th


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _schedule(n: int, rate_hz: float):
    """Yield (i, is_warmup) on a fixed-rate schedule (sleep to absolute deadlines, no drift)."""
    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


def _role_pub(a: argparse.Namespace) -> dict:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rgb, _ = _frames(a.width, a.height, a.encoding)
    node = rclpy.create_node("transport_bench_pub")
    pub = node.create_publisher(Image, "bench/image_raw", qos_profile_sensor_data)
    if not _wait(lambda: pub.get_subscription_count() >= 1, STARTUP_TIMEOUT_S):
        raise FusionError("publisher: no subscriber matched within the start-up timeout")
    time.sleep(1.0)     # the subscriber's side of the match
    sent = {}
    for i in _schedule(WARMUP_FRAMES + a.frames, a.rate):
        msg = rgb[i % len(rgb)]
        k = i - WARMUP_FRAMES
        msg.header.frame_id = f"f{k}" if k >= 0 else "warmup"
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        pub.publish(msg)
        if k >= 0:
            sent[k] = now
    node.destroy_node()
    return {"sent": sent}


def _spin_until_stdin(node) -> None:
    """Spin in a thread until the parent writes a line on stdin (the end of the run)."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    sys.stdin.readline()
    ex.shutdown(timeout_sec=2.0)


def _role_sub(a: argparse.Namespace) -> dict:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    node = rclpy.create_node("transport_bench_sub")
    received, malformed = {}, 0

    def cb(msg: Image) -> None:
        nonlocal malformed
        now = time.time_ns()
        if msg.header.frame_id == "warmup":
            return
        # Fast DDS has delivered large images truncated with a raised max message size: count it.
        if len(msg.data) != msg.step * msg.height or (msg.width, msg.height) != (a.width, a.height):
            malformed += 1
            return
        received[int(msg.header.frame_id[1:])] = now

    node.create_subscription(Image, "bench/image_raw", cb, qos_profile_sensor_data)
    _spin_until_stdin(node)
    return {"received": received, "malformed": malformed}


def _role_player(a: argparse.Namespace) -> dict:
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image

    from fusion_ros.tools.player import DRIVER_QOS, camera_info_msg

    rgb, th = _frames(a.width, a.height, a.encoding)
    node = rclpy.create_node("transport_bench_player")
    # Camera drivers publish with the default (reliable) QoS; the node subscribes best effort.
    pub_rgb = node.create_publisher(Image, "rgb/image_raw", DRIVER_QOS)
    pub_info = node.create_publisher(CameraInfo, "rgb/camera_info", DRIVER_QOS)
    pub_th = node.create_publisher(Image, "thermal/image_raw", DRIVER_QOS)
    info = camera_info_msg(a.width, a.height, "rgb_camera")
    # Subscriptions to the inputs exist once the node is active; the recorder is up once it subscribes.
    up = _wait(lambda: pub_rgb.get_subscription_count() >= 1 and pub_th.get_subscription_count() >= 1
               and node.count_subscribers("fused/image_raw") >= 1, STARTUP_TIMEOUT_S)
    if not up:
        raise FusionError("player: the fusion node or the recorder did not come up within the start-up timeout")
    time.sleep(1.0)
    thermal_hz, next_th, j = 9.0, 0.0, 0
    sent = {}
    t0 = time.monotonic()
    for i in _schedule(WARMUP_FRAMES + a.frames, a.rate):
        # Thermal at its own rate, interleaved with the RGB ticks.
        while time.monotonic() - t0 >= next_th:
            m = th[j % len(th)]
            m.header.stamp = node.get_clock().now().to_msg()
            pub_th.publish(m)
            j, next_th = j + 1, next_th + 1.0 / thermal_hz
        msg = rgb[i % len(rgb)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        info.header = msg.header
        pub_info.publish(info)
        pub_rgb.publish(msg)
        k = i - WARMUP_FRAMES
        if k >= 0:
            sent[k] = now
    node.destroy_node()
    return {"sent": sent}


def _role_recorder(a: argparse.Namespace) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    node = rclpy.create_node("transport_bench_recorder")
    by_stamp, malformed, status = {}, 0, {}

    def cb(msg: Image) -> None:
        nonlocal malformed
        now = time.time_ns()
        if len(msg.data) != msg.step * msg.height or (msg.width, msg.height) != (a.width, a.height):
            malformed += 1
            return
        by_stamp[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = now

    def diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith("fusion_node"):
                status.clear()
                status.update({kv.key: kv.value for kv in st.values})

    # The node publishes reliable; a deep queue so that the recorder never drops.
    node.create_subscription(Image, "fused/image_raw", cb,
                             QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                                        reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", diag, 50)
    _spin_until_stdin(node)
    keys = ("mode", "fused_frames", "passthrough_frames", "pairing_drops", "latency_ms_median", "latency_ms_p95",
            "node_overhead_ms_median", "inference_ms_median")
    # The parent matches receive times to the player's frames by stamp; the stamp is the system clock in ns.
    return {"received_by_stamp": by_stamp, "malformed": malformed,
            "node_status": {k: status[k] for k in keys if k in status}}


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusion_ros.tools.transport_bench")
    ap.add_argument("role", choices=("pub", "sub", "player", "recorder"))
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--encoding", default="bgr8")
    return run_role({"pub": _role_pub, "sub": _role_sub, "player": _role_player, "recorder": _role_recorder}, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
