"""Node overhead benchmark: what the node costs per frame on top of the network, over real rclpy.

The real :class:`~fusion_ros.ros.node.FusionNode` (real engine backend, real publishers with a matched
subscriber) is driven by calling its subscription callbacks with real ``sensor_msgs/Image`` messages, so the
DDS receive path is left out and everything the node does per frame is in: decode, pairing, thermal AGC,
registration, float conversion/resizes, encode, publish of the image and camera_info. The network's own
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
        dict with ``overhead_ms_median`` / ``overhead_ms_p95`` (callback wall time minus inference),
        per-stage medians (``stages_ms``: decode, agc, register, prepare, finish, encode, publish),
        ``inference_ms_median``, ``stamp_to_publish_ms_median`` / ``_p95`` (header stamp to the end of
        publish, network included, transport excluded), the backend description and the settings.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.pipeline.scene import NightScene, SceneConfig
    from fusion_ros.ros.node import FusionNode
    from fusion_ros.ros.player import camera_info_msg, image_msg

    ctx = Context()
    # A private random domain: the benchmark's topics never reach a running system.
    rclpy.init(context=ctx, domain_id=random.randint(1, 200))
    try:
        overrides = [Parameter("backend", value=backend), Parameter("model_path", value=model_path),
                     Parameter("precision", value=precision), Parameter("threads", value=threads),
                     Parameter("inference_size", value=list(inference_size)), Parameter("autostart", value=False),
                     Parameter("thermal_timeout_s", value=60.0)]
        node = FusionNode(context=ctx, parameter_overrides=overrides)
        node.trigger_configure()
        node.trigger_activate()
        sink = rclpy.create_node("fusion_bench_sink", context=ctx)
        sink.create_subscription(Image, "fused/image_raw", lambda m: None,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        node._info_callback(camera_info_msg(width, height, "rgb_camera"))
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
            node._thermal_callback(th_msg)
            node._rgb_callback(rgb_msg)       # pairs with the thermal frame at once (equal stamps) and publishes
            t1 = time.perf_counter()
            # Decode alone, for the breakdown (the callbacks above include it).
            ic.to_rgb(ic.decode(rgb_msg.encoding, height, width, rgb_msg.step, False, rgb_msg.data), rgb_msg.encoding)
            ic.to_thermal(ic.decode("mono16", th_msg.height, th_msg.width, th_msg.step, False, th_msg.data), "mono16")
            t2 = time.perf_counter()
            if i < warmup:
                continue
            if node.fused_frames != i + 1:
                raise RuntimeError(f"benchmark frame {i} was not fused (mode {node.mode}); pairing failed")
            tim = node.last_timings
            total.append((t1 - t0) * 1e3 - tim["infer_ms"])
            infer.append(tim["infer_ms"])
            decode.append((t2 - t1) * 1e3)
            stages.append(tim)
            latency.append(node.latencies_ms[-1])
        desc = node.backend.describe()
        node.trigger_deactivate()
        node.destroy_node()
        sink.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)

    def med(xs):
        return round(float(np.median(xs)), 3)

    keys = ("agc_ms", "register_ms", "prepare_ms", "finish_ms", "encode_ms", "publish_ms")
    return {
        "benchmark": "node_overhead",
        "width": width, "height": height, "thermal_size": list(thermal_size), "rgb_encoding": rgb_encoding,
        "inference_size": list(inference_size), "frames": frames,
        "overhead_ms_median": med(total),
        "overhead_ms_p95": round(float(np.percentile(total, 95)), 3),
        "stages_ms": {"decode_ms": med(decode), **{k: med([s[k] for s in stages]) for k in keys}},
        "inference_ms_median": med(infer),
        "stamp_to_publish_ms_median": med(latency),
        "stamp_to_publish_ms_p95": round(float(np.percentile(latency, 95)), 3),
        "backend": desc,
        "cpu_count": os.cpu_count(),
    }
