"""Offline fusion of recorded rosbag2 files (sqlite3 or mcap) through the node's pipeline, without a ROS graph.

``fuse_bag`` reads the RGB and thermal topics in log-time order, pairs them with the same
:class:`~fusion_ros.pipeline.sync.ApproxTimeSync` settings as the node (using the recording time as arrival),
fuses with :class:`~fusion_ros.pipeline.Fuser`, and writes the fused image and camera_info with the RGB
headers to a new bag. RGB frames without a thermal partner within the slop are written unchanged
(passthrough), as the node does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.config import apply_overrides
from fusion_ros.errors import ConfigError, EncodingError
from fusion_ros.pipeline import image_codec as ic

__all__ = ["fuse_bag", "read_bag_frames"]

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
INFO = "sensor_msgs/msg/CameraInfo"


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _check_topics(reader, topics: dict[str, str]) -> None:
    have = {c.topic: c.msgtype for c in reader.connections}
    for topic, msgtype in topics.items():
        if topic not in have:
            raise ConfigError(f"topic '{topic}' not in the bag; topics: {', '.join(sorted(have)) or 'none'}")
        if have[topic] != msgtype:
            raise ConfigError(f"topic '{topic}' has type {have[topic]}, expected {msgtype}")


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _decode(msg, thermal: bool) -> np.ndarray:
    view = ic.decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    return ic.to_thermal(view, msg.encoding) if thermal else ic.to_rgb(view, msg.encoding)


def read_bag_frames(path: str | Path, rgb_topic: str, thermal_topic: str, max_frames: int = 1000):
    """Read paired frames (nearest thermal per RGB frame) from a bag, for the demo player.

    Returns:
        :class:`fusion_ros.ros.player.Frames` at the bag's mean RGB rate.
    """
    from rosbags.rosbag2 import Reader

    from fusion_ros.pipeline.sync import ApproxTimeSync
    from fusion_ros.ros.player import Frames

    store = _typestore()
    sync = ApproxTimeSync()
    thermal, rgb, stamps = [], [], []
    with Reader(path) as reader:
        _check_topics(reader, {rgb_topic: IMAGE, thermal_topic: IMAGE})
        conns = [c for c in reader.connections if c.topic in (rgb_topic, thermal_topic)]
        pairs = []
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            arr = np.array(_decode(msg, conn.topic == thermal_topic))
            if conn.topic == thermal_topic:
                pairs += sync.add_thermal(_stamp(msg), arr, t_ns * 1e-9)
            else:
                pairs += sync.add_rgb(_stamp(msg), arr, t_ns * 1e-9)
            if len(pairs) >= max_frames:
                break
        pairs += sync.flush()
    for p in pairs[:max_frames]:
        if p.thermal is not None:
            thermal.append(p.thermal)
            rgb.append(p.rgb)
            stamps.append(p.rgb_stamp)
    if not rgb:
        raise ConfigError(f"no RGB frame of '{rgb_topic}' has a thermal partner on '{thermal_topic}' in {path}")
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 30.0
    return Frames(thermal, rgb, fps)


def fuse_bag(input_path: str | Path, output_path: str | Path, rgb_topic: str, thermal_topic: str,
             info_topic: str = "", out_topic: str = "/fused/image_raw", overrides: dict[str, Any] | None = None,
             storage: str = "mcap") -> dict:
    """Fuse a recorded bag into a new bag.

    Args:
        input_path: rosbag2 folder / file (sqlite3 or mcap).
        output_path: new rosbag2 folder (must not exist).
        rgb_topic, thermal_topic: input image topics.
        info_topic: RGB camera_info topic; "" = ``<rgb namespace>/camera_info`` when the bag has it.
        out_topic: fused image topic; the camera_info goes to ``<out namespace>/camera_info``.
        overrides: node parameter overrides (same names as the node's, e.g. ``inference_size``, ``backend``).
        storage: ``mcap`` or ``sqlite3`` for the output.

    Returns:
        counts: rgb, thermal, fused, passthrough, malformed, written.
    """
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from fusion_ros.engine import EngineConfig, create_backend
    from fusion_ros.pipeline import Fuser, FuserConfig
    from fusion_ros.pipeline.sync import ApproxTimeSync, SyncConfig

    overrides = dict(overrides or {})
    eng_keys = {"model_path": "model_path", "backend": "backend", "precision": "precision",
                "engine_cache_dir": "cache_dir", "device": "device", "threads": "threads"}
    eng = apply_overrides(EngineConfig(), {eng_keys[k]: overrides.pop(k) for k in list(overrides) if k in eng_keys})
    fuser_names = set(FuserConfig.__dataclass_fields__)
    sync_names = set(SyncConfig.__dataclass_fields__)
    fcfg = apply_overrides(FuserConfig(), {k: v for k, v in overrides.items() if k in fuser_names})
    scfg = apply_overrides(SyncConfig(), {k: v for k, v in overrides.items() if k in sync_names})
    unknown = set(overrides) - fuser_names - sync_names
    if unknown:
        raise ConfigError(f"unknown bag fuse parameter(s): {', '.join(sorted(unknown))}")
    out = Path(output_path)
    if out.exists():
        raise ConfigError(f"output '{out}' exists; choose a new folder")
    store = _typestore()
    fuser = Fuser(create_backend(eng), fcfg)
    sync = ApproxTimeSync(scfg)
    counts = {"rgb": 0, "thermal": 0, "fused": 0, "passthrough": 0, "malformed": 0, "written": 0}
    out_ns = out_topic.rsplit("/", 1)[0]
    info_latest = None

    with Reader(input_path) as reader:
        have = {c.topic for c in reader.connections}
        _check_topics(reader, {rgb_topic: IMAGE, thermal_topic: IMAGE})
        if not info_topic:
            guess = rgb_topic.rsplit("/", 1)[0] + "/camera_info"
            info_topic = guess if guess in have else ""
        topics = [rgb_topic, thermal_topic] + ([info_topic] if info_topic else [])
        conns = [c for c in reader.connections if c.topic in topics]
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(out, version=9, storage_plugin=plugin) as writer:
            w_img = writer.add_connection(out_topic, IMAGE, typestore=store)
            w_info = writer.add_connection(f"{out_ns}/camera_info", INFO, typestore=store)

            def emit(pair) -> None:
                msg, rgb, t_ns = pair.rgb
                if pair.thermal is None:
                    out_msg = msg
                    counts["passthrough"] += 1
                else:
                    fused = fuser.step(pair.thermal, rgb, pair.rgb_stamp)
                    enc = ic.encode(ic.from_rgb(fused, msg.encoding), msg.encoding)
                    out_msg = store.types[IMAGE](header=msg.header, height=enc.height, width=enc.width,
                                                 encoding=enc.encoding, is_bigendian=int(enc.is_bigendian),
                                                 step=enc.step, data=np.frombuffer(enc.data, np.uint8))
                    counts["fused"] += 1
                writer.write(w_img, t_ns, store.serialize_cdr(out_msg, IMAGE))
                counts["written"] += 1
                if info_latest is not None:
                    info = info_latest
                    info.header = msg.header
                    writer.write(w_info, t_ns, store.serialize_cdr(info, INFO))

            for conn, t_ns, raw in reader.messages(connections=conns):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.topic == info_topic:
                    info_latest = msg
                    continue
                is_th = conn.topic == thermal_topic
                counts["thermal" if is_th else "rgb"] += 1
                try:
                    arr = _decode(msg, is_th)
                except EncodingError as exc:
                    counts["malformed"] += 1
                    log.warning("skipping malformed message on %s: %s", conn.topic, exc)
                    continue
                if is_th:
                    pairs = sync.add_thermal(_stamp(msg), arr, t_ns * 1e-9)
                else:
                    pairs = sync.add_rgb(_stamp(msg), (msg, arr, t_ns), t_ns * 1e-9)
                for p in pairs:
                    emit(p)
            for p in sync.flush():
                emit(p)
    counts["pairing_drops"] = sync.stats.unpaired_rgb
    counts["output"] = str(out)
    return counts
