"""RGB + thermal frame pairs from a rosbag2 (sqlite3 or mcap), paired as the node pairs them (ROS-free).

Messages of the two ``sensor_msgs/msg/Image`` topics are read in recording order and fed to
:class:`~fusion_ros.pipeline.sync.ApproxTimeSync` (header stamps for pairing, the bag's log time as arrival
time), then decoded with :mod:`fusion_ros.pipeline.image_codec`. Offline there is no latency bound, so an RGB
frame may wait as long as it takes for its closest thermal frame.

Example:
    >>> from fusion_ros.io.bag import iter_image_pairs   # doctest: +SKIP
    >>> for pair in iter_image_pairs("drive_bag", "/camera/image_raw", "/thermal/image_raw"):  # doctest: +SKIP
    ...     print(pair.rgb_stamp, pair.rgb.shape, pair.thermal.dtype)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from fusion_ros.errors import ConfigError, EncodingError, FusionError
from fusion_ros.pipeline import image_codec as ic
from fusion_ros.pipeline.sync import ApproxTimeSync, SyncConfig

__all__ = ["IMAGE_TYPE", "ImagePair", "iter_image_pairs"]

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"


class ImagePair(NamedTuple):
    """One paired frame: ``rgb`` (H, W, 3) uint8 RGB; ``thermal`` (h, w) uint8/uint16 raw, as the camera sent it."""

    rgb_stamp: float
    rgb: np.ndarray
    thermal: np.ndarray
    thermal_stamp: float


def _stamp(msg) -> float:
    return float(msg.header.stamp.sec) + 1e-9 * float(msg.header.stamp.nanosec)


def _decode(msg, thermal: bool) -> np.ndarray:
    view = ic.decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
    # A copy: the view may be a reversed-channel or padded view of a buffer the reader reuses.
    return np.ascontiguousarray(ic.to_thermal(view, msg.encoding) if thermal else ic.to_rgb(view, msg.encoding))


def iter_image_pairs(bag: str | Path, rgb_topic: str, thermal_topic: str, slop_s: float | None = None,
                     every: int = 1) -> Iterator[ImagePair]:
    """Yield the RGB frames of a bag that have a thermal partner, in RGB stamp order.

    Args:
        bag: rosbag2 folder, or an .mcap / .db3 file.
        rgb_topic: visible Image topic (rgb8, bgr8, mono8, yuv422, ...).
        thermal_topic: thermal Image topic (mono16, 16UC1, mono8, 8UC1).
        slop_s: largest stamp difference of a pair, s; None = the node's ``approximate_sync_slop_s`` default.
        every: yield every N-th pair (>= 1), e.g. 10 keeps 3 of 30 frames a second.

    Yields:
        :class:`ImagePair`. Malformed messages are skipped with a warning.

    Raises:
        FusionError: the bag is missing, a topic is absent or is not an Image topic, or ``every`` < 1.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if every < 1:
        raise ConfigError(f"every={every} must be >= 1")
    path = Path(bag)
    if not path.exists():
        raise FusionError(f"bag '{path}' does not exist; pass a rosbag2 folder or an .mcap/.db3 file")
    slop = SyncConfig().approximate_sync_slop_s if slop_s is None else slop_s
    sync = ApproxTimeSync(SyncConfig(approximate_sync_slop_s=slop, queue_size=1000, sync_max_wait_s=1e9))
    n_paired = 0

    def kept(pairs) -> Iterator[ImagePair]:
        nonlocal n_paired
        for p in pairs:
            if p.thermal is None:
                continue
            n_paired += 1
            if (n_paired - 1) % every == 0:
                yield ImagePair(p.rgb_stamp, p.rgb, p.thermal, p.thermal_stamp)

    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        have = {c.topic: c.msgtype for c in reader.connections}
        for topic in (rgb_topic, thermal_topic):
            if topic not in have:
                raise FusionError(f"topic '{topic}' not in bag '{path}'; it has {', '.join(sorted(have)) or 'none'}")
            if have[topic] != IMAGE_TYPE:
                raise FusionError(f"topic '{topic}' has type {have[topic]}; expected {IMAGE_TYPE}")
        conns = [c for c in reader.connections if c.topic in (rgb_topic, thermal_topic)]
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            is_thermal = conn.topic == thermal_topic
            try:
                img = _decode(msg, is_thermal)
            except EncodingError as exc:
                log.warning("skipping malformed message on %s: %s", conn.topic, exc)
                continue
            arrival = t_ns * 1e-9
            if is_thermal:
                yield from kept(sync.add_thermal(_stamp(msg), img, arrival))
            else:
                yield from kept(sync.add_rgb(_stamp(msg), img, arrival))
        yield from kept(sync.flush())
    log.info("%s: %d RGB frames paired, %d without a thermal frame within %.3f s", path, n_paired,
             sync.stats.unpaired_rgb, slop)
