"""``fusion-ros bag fuse``: offline fusion of a recorded rosbag2 (sqlite3 or mcap) through the node's pipeline,
without a ROS graph.

``fuse_bag`` reads the RGB and thermal topics in log-time order (:mod:`fusion_ros.io.bag`) and drives the node's
:class:`~fusion_ros.pipeline.stream.FusionStream` with the node's stream, sync, fuser and engine parameters
(the recording time stands in for the arrival time), and writes the fused image and camera_info with the RGB
headers to a new bag. RGB frames without a thermal partner are written unchanged (passthrough), as the node does;
a looped or clock-reset recording restarts the pairing as in the node.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.errors import ConfigError
from fusion_ros.io.bag import IMAGE_TYPE, INFO_TYPE, STORAGES, bag_topics, bag_writer, read_messages, typestore
from fusion_ros.pipeline import image_codec as ic

__all__ = ["fuse_bag"]

log = logging.getLogger(__name__)


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
        overrides: the node's stream, sync, fuser and engine parameters by their node names (e.g.
            ``inference_size``, ``backend``, ``engine_cache_dir``).
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
    if storage not in STORAGES:
        raise ConfigError(f"storage '{storage}' unknown; use {' or '.join(STORAGES)}")
    if not info_topic:
        guess = rgb_topic.rsplit("/", 1)[0] + "/camera_info"
        info_topic = guess if bag_topics(src).get(guess) == INFO_TYPE else ""
    stream = FusionStream(Fuser(create_backend(settings.engine), settings.fuser), settings.stream, settings.sync)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        counts = _fuse_into(src, partial, stream, rgb_topic, thermal_topic, info_topic, out_topic, storage)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    counts["output"] = str(out)
    return counts


def _count(counts: dict, kind: str) -> None:
    counts[kind] = counts.get(kind, 0) + 1


def _fuse_into(src: Path, dst: Path, stream, rgb_topic: str, thermal_topic: str, info_topic: str, out_topic: str,
               storage: str) -> dict:
    store = typestore()
    counts: dict[str, Any] = {"rgb": 0, "thermal": 0, "fused": 0, "passthrough": 0, "malformed": {}, "failed": {},
                              "written": 0}
    topics = {rgb_topic: IMAGE_TYPE, thermal_topic: IMAGE_TYPE, **({info_topic: INFO_TYPE} if info_topic else {})}
    messages = read_messages(src, topics)       # checks the topics before the output is created
    info_latest = None
    with bag_writer(dst, storage) as writer:
        w_img = writer.add_connection(out_topic, IMAGE_TYPE, typestore=store)
        w_info = writer.add_connection(f"{out_topic.rsplit('/', 1)[0]}/camera_info", INFO_TYPE, typestore=store)

        def emit(jobs) -> None:
            for job in jobs:
                msg, t_ns = job.item
                try:
                    out = stream.process(job)
                    out_msg = msg if out.fused is None else _fused_msg(store, msg, out.fused)
                except Exception as exc:     # one bad frame loses that frame only
                    kind = getattr(exc, "kind", None) or type(exc).__name__
                    _count(counts["failed"], kind)
                    log.warning("frame at %d ns skipped (%s): %s", t_ns, kind, exc)
                    continue
                counts["fused" if out.fused is not None else "passthrough"] += 1
                writer.write(w_img, t_ns, store.serialize_cdr(out_msg, IMAGE_TYPE))
                counts["written"] += 1
                if info_latest is not None:
                    info_latest.header = msg.header
                    writer.write(w_info, t_ns, store.serialize_cdr(info_latest, INFO_TYPE))

        for topic, t_ns, msg in messages:
            if topic == info_topic:
                info_latest = msg
                continue
            is_th = topic == thermal_topic
            counts["thermal" if is_th else "rgb"] += 1
            try:
                arr = ic.thermal_from_message(msg) if is_th else ic.rgb_from_message(msg)
            except Exception as exc:
                kind = f"{'thermal' if is_th else 'rgb'}_{getattr(exc, 'kind', type(exc).__name__)}"
                _count(counts["malformed"], kind)
                log.warning("skipping malformed message on %s (%s): %s", topic, kind, exc)
                continue
            now, stamp = t_ns * 1e-9, ic.stamp_seconds(msg.header.stamp)
            if is_th:
                emit(stream.add_thermal(stamp, arr, now=now))
            else:
                emit(stream.add_rgb(stamp, arr, item=(msg, t_ns), now=now))
        emit(stream.flush())
    counts["pairing_drops"] = stream.sync.stats.unpaired_rgb
    counts["stamp_jumps"] = stream.stats.stamp_jumps
    return counts


def _fused_msg(store, msg, fused: np.ndarray):
    enc = ic.encode(ic.from_rgb(fused, msg.encoding), msg.encoding)
    return store.types[IMAGE_TYPE](header=msg.header, height=enc.height, width=enc.width, encoding=enc.encoding,
                                   is_bigendian=int(enc.is_bigendian), step=enc.step,
                                   data=np.frombuffer(enc.data, np.uint8))
