"""Offline fusion of recorded rosbag2 files (sqlite3 or mcap) through the node's pipeline, without a ROS graph.

``fuse_bag`` reads the RGB and thermal topics in log-time order and drives the node's
:class:`~fusion_ros.pipeline.stream.FusionStream` with the node's parameters (the recording time stands in for the
arrival time), and writes the fused image and camera_info with the RGB headers to a new bag. RGB frames without
a thermal partner are written unchanged (passthrough), as the node does; a looped or clock-reset recording
restarts the pairing as in the node.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.errors import ConfigError
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
    return ic.stamp_seconds(msg.header.stamp)


def _decode(msg, thermal: bool) -> np.ndarray:
    return ic.thermal_from_message(msg) if thermal else ic.rgb_from_message(msg)


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
    """Fuse a recorded bag into a new bag, through the node's :class:`~fusion_ros.pipeline.stream.FusionStream`.

    Every RGB frame is written (fused, or unchanged when it has no thermal partner), none is dropped: the
    recording time stands in for the arrival time. The bag is written to a hidden folder beside the output and
    renamed at the end, so an error or Ctrl-C leaves no half-written bag and a rerun works.

    Args:
        input_path: rosbag2 folder / file (sqlite3 or mcap).
        output_path: new rosbag2 folder (must not exist).
        rgb_topic, thermal_topic: input image topics.
        info_topic: RGB camera_info topic; "" = ``<rgb namespace>/camera_info`` when the bag has it.
        out_topic: fused image topic; the camera_info goes to ``<out namespace>/camera_info``.
        overrides: node parameters by the node's names (e.g. ``inference_size``, ``backend``, ``engine_cache_dir``).
        storage: ``mcap`` or ``sqlite3`` for the output.

    Returns:
        counts: rgb, thermal, fused, passthrough, malformed (by kind), failed, stamp_jumps, written, output.
    """
    from fusion_ros.engine import create_backend
    from fusion_ros.pipeline import Fuser, FusionStream
    from fusion_ros.ros.params import settings_from_values

    settings = settings_from_values(dict(overrides or {}))
    src, out = Path(input_path), Path(output_path)
    if not src.exists():
        raise ConfigError(f"input bag '{src}' does not exist; pass a rosbag2 folder, .mcap or .db3 file")
    if out.exists():
        raise ConfigError(f"output '{out}' exists; choose a new folder (bag fuse never overwrites)")
    if storage not in ("mcap", "sqlite3"):
        raise ConfigError(f"storage '{storage}' unknown; use mcap or sqlite3")
    stream = FusionStream(Fuser(create_backend(settings.engine), settings.fuser), settings.stream, settings.sync)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    from rosbags.rosbag2 import ReaderError

    try:
        counts = _fuse_into(src, partial, stream, rgb_topic, thermal_topic, info_topic, out_topic, storage)
        os.replace(partial, out)
    except ReaderError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ConfigError(f"cannot read the bag '{src}': {exc}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    counts["output"] = str(out)
    return counts


def _fuse_into(src: Path, dst: Path, stream, rgb_topic: str, thermal_topic: str, info_topic: str, out_topic: str,
               storage: str) -> dict:
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    store = _typestore()
    counts: dict[str, Any] = {"rgb": 0, "thermal": 0, "fused": 0, "passthrough": 0, "malformed": {}, "failed": {},
                              "written": 0}
    out_ns = out_topic.rsplit("/", 1)[0]
    info_latest = None
    with Reader(src) as reader:
        have = {c.topic for c in reader.connections}
        _check_topics(reader, {rgb_topic: IMAGE, thermal_topic: IMAGE})
        if not info_topic:
            guess = rgb_topic.rsplit("/", 1)[0] + "/camera_info"
            info_topic = guess if guess in have else ""
        topics = [rgb_topic, thermal_topic] + ([info_topic] if info_topic else [])
        conns = [c for c in reader.connections if c.topic in topics]
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        with Writer(dst, version=9, storage_plugin=plugin) as writer:
            w_img = writer.add_connection(out_topic, IMAGE, typestore=store)
            w_info = writer.add_connection(f"{out_ns}/camera_info", INFO, typestore=store)

            def emit(jobs) -> None:
                for job in jobs:
                    msg, t_ns = job.item
                    try:
                        out = stream.process(job)
                        out_msg = msg if out.fused is None else _fused_msg(store, msg, out.fused)
                    except Exception as exc:     # one bad frame loses that frame only
                        kind = getattr(exc, "kind", None) or type(exc).__name__
                        counts["failed"][kind] = counts["failed"].get(kind, 0) + 1
                        log.warning("frame at %d ns skipped (%s): %s", t_ns, kind, exc)
                        continue
                    counts["fused" if out.fused is not None else "passthrough"] += 1
                    writer.write(w_img, t_ns, store.serialize_cdr(out_msg, IMAGE))
                    counts["written"] += 1
                    if info_latest is not None:
                        info_latest.header = msg.header
                        writer.write(w_info, t_ns, store.serialize_cdr(info_latest, INFO))

            for conn, t_ns, raw in reader.messages(connections=conns):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.topic == info_topic:
                    info_latest = msg
                    continue
                is_th = conn.topic == thermal_topic
                counts["thermal" if is_th else "rgb"] += 1
                try:
                    arr = _decode(msg, is_th)
                except Exception as exc:
                    kind = f"{'thermal' if is_th else 'rgb'}_{getattr(exc, 'kind', type(exc).__name__)}"
                    counts["malformed"][kind] = counts["malformed"].get(kind, 0) + 1
                    log.warning("skipping malformed message on %s (%s): %s", conn.topic, kind, exc)
                    continue
                now = t_ns * 1e-9
                if is_th:
                    emit(stream.add_thermal(_stamp(msg), arr, now=now))
                else:
                    emit(stream.add_rgb(_stamp(msg), arr, item=(msg, t_ns), now=now))
            emit(stream.flush())
    counts["pairing_drops"] = stream.sync.stats.unpaired_rgb
    counts["stamp_jumps"] = stream.stats.stamp_jumps
    return counts


def _fused_msg(store, msg, fused: np.ndarray):
    enc = ic.encode(ic.from_rgb(fused, msg.encoding), msg.encoding)
    return store.types[IMAGE](header=msg.header, height=enc.height, width=enc.width, encoding=enc.encoding,
                              is_bigendian=int(enc.is_bigendian), step=enc.step, data=np.frombuffer(enc.data, np.uint8))
