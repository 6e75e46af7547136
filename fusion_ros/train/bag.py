"""rosbag2 (mcap or sqlite3) -> aligned training pairs, with the node's pairing rule.

Messages of the two topics are read in recording order and fed to
:class:`fusion_ros.pipeline.sync.ApproxTimeSync` exactly as the node receives them (header stamps for
pairing, the bag's log time as arrival time), then decoded with the node's codec, the thermal frame
normalised by the node's AGC (8-bit: x/255; 16-bit: percentile AGC, temporally smoothed) and warped onto
the RGB grid by the node's registration. Output: ``<out>/ir/<i>.png`` (8-bit) and ``<out>/vi/<i>.png``
(RGB), numbered in RGB stamp order, so the folder is both a pair folder and a frame-folder clip for
stage II. ``<out>/pairs.csv`` records the stamps of every pair.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import FusionError

__all__ = ["extract_pairs", "read_image_messages"]

log = logging.getLogger(__name__)


def _stamp(msg) -> float:
    return float(msg.header.stamp.sec) + 1e-9 * float(msg.header.stamp.nanosec)


def read_image_messages(bag: str | Path, topics: list[str]):
    """Yield ``(topic, log_time_s, msg)`` for the ``sensor_msgs/msg/Image`` messages of ``topics``, in log order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(bag)
    if not path.exists():
        raise FusionError(f"bag '{path}' does not exist; pass a rosbag2 folder or an .mcap/.db3 file")
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with AnyReader([path], default_typestore=typestore) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        found = {c.topic for c in conns}
        missing = [t for t in topics if t not in found]
        if missing:
            have = sorted({c.topic for c in reader.connections})
            raise FusionError(f"topic(s) {missing} not in bag '{path}'; it has {have}")
        for conn, t_ns, raw in reader.messages(connections=conns):
            if conn.msgtype != "sensor_msgs/msg/Image":
                raise FusionError(f"topic {conn.topic} has type {conn.msgtype}; expected sensor_msgs/msg/Image")
            yield conn.topic, t_ns * 1e-9, reader.deserialize(raw, conn.msgtype)


def extract_pairs(bag: str | Path, thermal_topic: str, rgb_topic: str, out: str | Path, slop_s: float = 0.05,
                  every: int = 1, fuser_cfg=None, progress: bool = True) -> int:
    """Write the synchronised pairs of a bag as a pair folder.

    Args:
        bag: rosbag2 folder or file.
        thermal_topic: thermal Image topic (mono8/8UC1/mono16/16UC1).
        rgb_topic: visible Image topic (rgb8, bgr8, mono8, yuv422, ...).
        out: output folder.
        slop_s: largest stamp difference of a pair (the node's ``approximate_sync_slop_s``).
        every: keep every N-th pair.
        fuser_cfg: :class:`fusion_ros.pipeline.fuser.FuserConfig` for AGC and registration (default settings if None).
        progress: tqdm bar.

    Returns:
        Number of pairs written.
    """
    from tqdm import tqdm

    from fusion_ros.pipeline.agc import ThermalAGC
    from fusion_ros.pipeline.fuser import FuserConfig
    from fusion_ros.pipeline.image_codec import decode, to_rgb, to_thermal
    from fusion_ros.pipeline.registration import warp_thermal
    from fusion_ros.pipeline.sync import ApproxTimeSync, SyncConfig

    if every < 1:
        raise FusionError(f"every={every} must be >= 1")
    fuser_cfg = fuser_cfg or FuserConfig()
    # The queue must hold every RGB frame that can wait for a thermal one; offline there is no latency bound.
    sync = ApproxTimeSync(SyncConfig(approximate_sync_slop_s=slop_s, queue_size=100, sync_max_wait_s=1e9))
    agc = ThermalAGC(fuser_cfg.agc)
    reg = fuser_cfg.registration
    out = Path(out)
    (out / "ir").mkdir(parents=True, exist_ok=True)
    (out / "vi").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    n_pairs = 0

    def write(pairs) -> None:
        nonlocal n_pairs
        for p in pairs:
            if p.thermal is None:
                continue
            n_pairs += 1
            if (n_pairs - 1) % every:
                continue
            rgb = p.rgb
            th = warp_thermal(p.thermal, (rgb.shape[1], rgb.shape[0]), reg)
            idx = len(rows)
            name = f"{idx:06d}"
            cv2.imwrite(str(out / "ir" / f"{name}.png"), np.clip(np.rint(th * 255.0), 0, 255).astype(np.uint8))
            cv2.imwrite(str(out / "vi" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            rows.append({"name": name, "rgb_stamp": f"{p.rgb_stamp:.9f}", "thermal_stamp": f"{p.thermal_stamp:.9f}"})

    bar = tqdm(desc="bag", unit="msg", disable=not progress)
    for topic, t_log, msg in read_image_messages(bag, [thermal_topic, rgb_topic]):
        bar.update(1)
        img = decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
        if topic == thermal_topic:
            # AGC in arrival order, as the node does; the normalised frame is what gets paired.
            write(sync.add_thermal(_stamp(msg), agc(np.ascontiguousarray(to_thermal(img, msg.encoding))), arrival=t_log))
        else:
            write(sync.add_rgb(_stamp(msg), np.ascontiguousarray(to_rgb(img, msg.encoding)), arrival=t_log))
    write(sync.flush())
    bar.close()
    with (out / "pairs.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "rgb_stamp", "thermal_stamp"])
        w.writeheader()
        w.writerows(rows)
    log.info("%s: %d pairs written to %s (%d RGB frames without thermal within %.3f s)", bag, len(rows), out,
             sync.stats.unpaired_rgb, slop_s)
    return len(rows)
