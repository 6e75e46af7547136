"""``fusion-ros demo``: the node, a player and a recorder over real rclpy/DDS, with files to look at.

Starts the fusion node (engine loaded at configure), a player publishing a paired thermal/RGB sequence
(the procedural night scene by default) like two free-running cameras, and a recorder on
``fused/image_raw``; then writes ``fused.mp4``, ``strip.png`` (thermal | RGB | fused), ``fused_frame.png``
and ``summary.json`` (the node's last /diagnostics) to the output folder.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from fusion_ros.errors import FusionError

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def _thermal_display(th: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from fusion_ros.pipeline.agc import AGCConfig, ThermalAGC

    x = ThermalAGC(AGCConfig(agc_smoothing=1.0))(th)
    return cv2.cvtColor(cv2.resize((x * 255).astype(np.uint8), size), cv2.COLOR_GRAY2RGB)


def run_demo(out: str | Path = "demo_out", pairs: str | None = None, video: Sequence[str] | None = None,
             bag: str | None = None, rgb_topic: str = "/camera/image_raw", thermal_topic: str = "/thermal/image_raw",
             frames: int = 60, rgb_hz: float = 15.0, thermal_hz: float = 9.0, rgb_encoding: str = "bgr8",
             params: dict | None = None) -> dict:
    """Run the demo and write its files.

    Args:
        out: output folder (created).
        pairs / video / bag: frame source instead of the procedural scene (image pair folder with ir/ and vi/;
            (IR, VI) video files; a rosbag2 folder or file with ``rgb_topic`` and ``thermal_topic``).
        frames: frames to play (at most).
        rgb_hz, thermal_hz: publishing rates of the two cameras.
        rgb_encoding: encoding the player publishes the RGB camera in (the fused output uses the same).
        params: extra node parameters (name -> value), e.g. ``{"backend": "torch"}``.

    Returns:
        summary dict (files written, frames sent/received, the node's diagnostics).
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.ros.node import FusionNode
    from fusion_ros.tools.player import Frames, PlayerNode, RecorderNode, load_frames, read_bag_frames

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    profile = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    if bag:
        src = read_bag_frames(bag, rgb_topic, thermal_topic, max_frames=frames)
    else:
        src = load_frames(pairs=pairs, video=video, frames=frames, fps=rgb_hz)
    src = Frames(src.thermal, src.rgb, rgb_hz)      # play one source frame per RGB tick
    if pairs and thermal_hz != rgb_hz:
        # Pairs are unrelated stills, not a moving scene: a thermal camera ticking at other instants would
        # send the node a neighbouring still's thermal image as the nearest one in time.
        log.info("--pairs: thermal published with each RGB image (thermal_hz %.1f -> %.1f)", thermal_hz, rgb_hz)
        thermal_hz = rgb_hz

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 200))
    try:
        overrides = {"autostart": False, "diagnostics_period_s": 0.5, "thermal_timeout_s": 2.0,
                     # The demo records every frame: deep input queues (standard QoS overrides) instead of
                     # dropping frames when inference is slower than the camera on a small CPU.
                     "qos_overrides./rgb/image_raw.subscription.depth": len(src) + 10,
                     "qos_overrides./thermal/image_raw.subscription.depth": len(src) + 10,
                     **(params or {})}
        node = FusionNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        if node.trigger_configure().name != "SUCCESS":
            raise FusionError("the fusion node failed to configure; see the log above for the parameter to fix")
        node.trigger_activate()
        player = PlayerNode(src, rgb_encoding=rgb_encoding, context=ctx)
        rec = RecorderNode(context=ctx, depth=len(src) + 10)
        from rclpy.executors import SingleThreadedExecutor
        import threading

        # One executor thread: rclpy's MultiThreadedExecutor only adds GIL contention and starved the player.
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(rec)
        spin = threading.Thread(target=ex.spin, daemon=True)
        spin.start()
        end = time.monotonic() + 20
        while time.monotonic() < end and not (player.pub_rgb.get_subscription_count()
                                              and node._pub_image.get_subscription_count()):
            time.sleep(0.05)
        time.sleep(0.2)
        player.play(rgb_hz=rgb_hz, thermal_hz=thermal_hz, n_rgb=len(src))
        last_n, last_t = -1, time.monotonic()
        while len(rec.images) < len(player.sent_rgb) and time.monotonic() - last_t < 3.0:
            if len(rec.images) != last_n:
                last_n, last_t = len(rec.images), time.monotonic()
            time.sleep(0.05)
        time.sleep(0.6)     # one more diagnostics period
        status = rec.last_status() or node.diagnostics_values()
        ex.shutdown(timeout_sec=2.0)
        node.trigger_deactivate()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)

    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): f for m, f in zip(player.sent_rgb, player.sent_frame)}
    fused = []
    for m in rec.images:
        idx = by_stamp.get((m.header.stamp.sec, m.header.stamp.nanosec))
        if idx is None:
            continue
        view = ic.decode(m.encoding, m.height, m.width, m.step, m.is_bigendian, m.data)
        fused.append((idx, np.array(ic.to_rgb(view, m.encoding))))
    if not fused:
        raise FusionError("the demo recorded no fused frame; check the log above (engine, DDS transport)")
    h, w = fused[0][1].shape[:2]
    video_path = out / "fused.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), rgb_hz, (w * 3, h))
    for idx, f in fused:
        row = np.hstack([_thermal_display(src.thermal[idx], (w, h)), src.rgb[idx], f])
        writer.write(cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    writer.release()
    # The strip shows a fused frame: passthrough ones (before the first thermal frame) equal their RGB input.
    really_fused = [(i, f) for i, f in fused if not np.array_equal(f, src.rgb[i])] or fused
    idx, f = really_fused[len(really_fused) // 2]
    strip = np.hstack([_thermal_display(src.thermal[idx], (w, h)), src.rgb[idx], f])
    cv2.imwrite(str(out / "strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "fused_frame.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    summary = {
        "source": "bag" if bag else "pairs" if pairs else "video" if video else "procedural night scene",
        "rgb_frames_sent": len(player.sent_rgb), "fused_frames_received": len(rec.images),
        "files": [str(p) for p in (video_path, out / "strip.png", out / "fused_frame.png", out / "summary.json")],
        "diagnostics": status,
        "node_parameters": overrides,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
