"""Node overhead benchmark: what the node costs per frame on top of the network, over real rclpy.

The node's own per-frame path is driven with real ``sensor_msgs/Image`` messages: decode
(:mod:`fusion_ros.ros.messages`), pairing and fusing (:class:`~fusion_ros.pipeline.stream.FusionStream`, built
from the node's parameters, with a real engine backend), encode with the RGB header, and publish of the image and
camera_info on real publishers with a matched subscriber. The DDS receive path is left out. The network's own
time (``backend.infer``) is measured separately and subtracted.

Used by ``fusion-ros bench --node --json``.
"""

from __future__ import annotations

import logging
import os
import random
import time

import numpy as np

__all__ = ["run_node_bench"]

log = logging.getLogger(__name__)


def run_node_bench(width: int = 640, height: int = 480, frames: int = 100, warmup: int = 10,
                   thermal_size: tuple[int, int] = (320, 256), rgb_encoding: str = "bgr8",
                   backend: str = "onnxruntime", model_path: str = "", precision: str = "fp32",
                   threads: int = 0, inference_size: tuple[int, int] = (0, 0)) -> dict:
    """Measure the per-frame node overhead (everything but the network) and the stamp-to-publish latency.

    Args:
        width, height: RGB size, px.
        frames: timed frames (after ``warmup`` untimed ones).
        thermal_size: (width, height) of the mono16 thermal stream.
        rgb_encoding: encoding of the RGB input (and so of the output).
        backend, model_path, precision, threads: engine parameters of the node.
        inference_size: (width, height) the network runs at; (0, 0) = RGB size.

    Returns:
        dict with ``overhead_ms_median`` / ``overhead_ms_p95`` (per-frame wall time minus inference),
        per-stage medians (``stages_ms``: decode and pair, agc, register, prepare, finish, encode, publish),
        ``inference_ms_median``, ``stamp_to_publish_ms_median`` / ``_p95`` (header stamp to the end of
        publish, network included, transport excluded), the backend description and the settings.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from fusion_ros.engine import create_backend
    from fusion_ros.pipeline import Fuser, FusionStream
    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.tools.scene import NightScene, SceneConfig
    from fusion_ros.ros import messages as M
    from fusion_ros.ros.node import PUBLISHER_QOS
    from fusion_ros.ros.params import settings_from_values
    from fusion_ros.tools.player import camera_info_msg, image_msg

    settings = settings_from_values({"backend": backend, "model_path": model_path, "precision": precision,
                                     "threads": threads, "inference_size": list(inference_size),
                                     "thermal_timeout_s": 60.0})
    stream = FusionStream(Fuser(create_backend(settings.engine), settings.fuser), settings.stream, settings.sync)
    ctx = Context()
    # A private random domain: the benchmark's topics never reach a running system.
    rclpy.init(context=ctx, domain_id=random.randint(1, 200))
    try:
        node = rclpy.create_node("fusion_bench_node", context=ctx)
        pub_image = node.create_publisher(Image, "fused/image_raw", PUBLISHER_QOS)
        pub_info = node.create_publisher(CameraInfo, "fused/camera_info", PUBLISHER_QOS)
        sink = rclpy.create_node("fusion_bench_sink", context=ctx)
        sink.create_subscription(Image, "fused/image_raw", lambda m: None,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        info = camera_info_msg(width, height, "rgb_camera")
        scene = NightScene(SceneConfig(rgb_size=(width, height), thermal_size=thermal_size, frames=8))
        pairs = list(scene)
        rgb_msgs = [image_msg(ic.from_rgb(r, rgb_encoding), rgb_encoding, "rgb_camera") for _, r, _ in pairs]
        th_msgs = [image_msg(t, "mono16", "thermal_camera") for t, _, _ in pairs]
        clock = node.get_clock()
        total, decode, stages, infer, latency = [], [], [], [], []
        for i in range(warmup + frames):
            rgb_msg, th_msg = rgb_msgs[i % len(rgb_msgs)], th_msgs[i % len(th_msgs)]
            rgb_msg.header.stamp = th_msg.header.stamp = clock.now().to_msg()
            t0 = time.perf_counter()
            stamp = M.stamp_seconds(rgb_msg.header.stamp)
            stream.add_thermal(stamp, M.decode_thermal(th_msg))
            jobs = stream.add_rgb(stamp, M.decode_rgb(rgb_msg), rgb_msg)   # equal stamps: decided at once
            t1 = time.perf_counter()
            outs = stream.run(jobs)
            t2 = time.perf_counter()
            if len(outs) != 1 or outs[0].fused is None:
                raise RuntimeError(f"benchmark frame {i} was not fused (mode {stream.mode}); pairing failed")
            out_msg = M.image_with_header(rgb_msg, outs[0].fused, rgb_encoding)
            t3 = time.perf_counter()
            pub_image.publish(out_msg)
            info.header = rgb_msg.header
            pub_info.publish(info)
            t4 = time.perf_counter()
            if i < warmup:
                continue
            tim = dict(vars(outs[0].timings), encode_ms=(t3 - t2) * 1e3, publish_ms=(t4 - t3) * 1e3)
            total.append((t4 - t0) * 1e3 - tim["infer_ms"])
            infer.append(tim["infer_ms"])
            decode.append((t1 - t0) * 1e3)
            stages.append(tim)
            latency.append((clock.now().nanoseconds - M.stamp_nanoseconds(rgb_msg.header.stamp)) * 1e-6)
        desc = stream.fuser.backend.describe()
        node.destroy_node()
        sink.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)

    def med(xs):
        return round(float(np.median(xs)), 3)

    keys = ("agc_ms", "register_ms", "prepare_ms", "finish_ms", "encode_ms", "publish_ms")
    aligns = [s["align_ms"] for s in stages if s["align_ms"] > 0]
    return {
        "benchmark": "node_overhead",
        "width": width, "height": height, "thermal_size": list(thermal_size), "rgb_encoding": rgb_encoding,
        "inference_size": list(inference_size), "frames": frames,
        "overhead_ms_median": med(total),
        "overhead_ms_p95": round(float(np.percentile(total, 95)), 3),
        "stages_ms": {"decode_and_pair_ms": med(decode), **{k: med([s[k] for s in stages]) for k in keys}},
        # The automatic-shift estimate runs on one frame in auto_align_every: its own median, and how many ran.
        "align_estimate_ms_median": med(aligns) if aligns else None,
        "align_estimates": len(aligns),
        "inference_ms_median": med(infer),
        "stamp_to_publish_ms_median": med(latency),
        "stamp_to_publish_ms_p95": round(float(np.percentile(latency, 95)), 3),
        "backend": desc,
        "cpu_count": os.cpu_count(),
    }
