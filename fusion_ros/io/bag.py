"""rosbag2 recordings (sqlite3 or mcap), ROS-free through ``rosbags``: messages in, messages out, image pairs.

Messages are deserialised with the ROS 2 Jazzy types, the node's message types. Every reader checks the topics
it is asked for before the first message, with one error for a missing or mistyped topic.

:func:`iter_image_pairs` pairs the RGB and thermal Image topics as the node pairs them: header stamps into
:class:`~fusion_ros.pipeline.sync.ApproxTimeSync`, the bag's log time as arrival time, decoded with the node's
message decoder. Offline there is no latency bound, so an RGB frame may wait as long as it takes for its closest
thermal frame.

Example:
    >>> from fusion_ros.io.bag import iter_image_pairs   # doctest: +SKIP
    >>> for pair in iter_image_pairs("drive_bag", "/camera/image_raw", "/thermal/image_raw"):  # doctest: +SKIP
    ...     print(pair.rgb_stamp, pair.rgb.shape, pair.thermal.dtype)
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from fusion_ros.errors import ConfigError, EncodingError
from fusion_ros.pipeline import image_codec as ic
from fusion_ros.pipeline.sync import ApproxTimeSync, SyncConfig

__all__ = ["IMAGE_TYPE", "INFO_TYPE", "STORAGES", "ImagePair", "typestore", "bag_topics", "check_topics", "read_messages",
           "bag_writer", "iter_image_pairs"]

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STORAGES = ("mcap", "sqlite3")


class ImagePair(NamedTuple):
    """One paired frame: ``rgb`` (H, W, 3) uint8 RGB; ``thermal`` (h, w) uint8/uint16 raw, as the camera sent it."""

    rgb_stamp: float
    rgb: np.ndarray
    thermal: np.ndarray
    thermal_stamp: float


def typestore():
    """The ROS 2 Jazzy message types (``rosbags`` typestore)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


@contextmanager
def _open(bag: str | Path):
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(bag)
    if not path.exists():
        raise ConfigError(f"bag '{path}' does not exist; pass a rosbag2 folder or an .mcap/.db3 file")
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as exc:
        raise ConfigError(f"cannot read the bag '{path}': {exc}") from None
    try:
        yield reader
    finally:
        reader.close()


def bag_topics(bag: str | Path) -> dict[str, str]:
    """Topic -> message type of every topic in the bag."""
    with _open(bag) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def check_topics(bag: str | Path, topics: dict[str, str]) -> None:
    """Raise ConfigError unless the bag has every topic of ``topics`` (topic -> type) with that type."""
    have = bag_topics(bag)
    for topic, msgtype in topics.items():
        if topic not in have:
            raise ConfigError(f"topic '{topic}' not in the bag '{bag}'; it has {', '.join(sorted(have)) or 'none'}")
        if have[topic] != msgtype:
            raise ConfigError(f"topic '{topic}' in the bag '{bag}' has type {have[topic]}; expected {msgtype}")


def read_messages(bag: str | Path, topics: dict[str, str]) -> Iterator[tuple[str, int, object]]:
    """The messages of ``topics`` (topic -> expected type) as ``(topic, log_time_ns, msg)``, in log order.

    Raises:
        ConfigError: at the call, the bag is missing or unreadable, or a topic is absent or of another type.
    """
    check_topics(bag, topics)
    return _messages(bag, topics)


def _messages(bag: str | Path, topics: dict[str, str]) -> Iterator[tuple[str, int, object]]:
    from rosbags.rosbag2 import ReaderError

    store = typestore()
    with _open(bag) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        try:
            for conn, t_ns, raw in reader.messages(connections=conns):
                yield conn.topic, t_ns, store.deserialize_cdr(raw, conn.msgtype)
        except ReaderError as exc:
            raise ConfigError(f"cannot read the bag '{bag}': {exc}") from None


@contextmanager
def bag_writer(path: str | Path, storage: str = "mcap"):
    """A ``rosbags`` rosbag2 writer on a new folder ``path`` (``storage``: mcap or sqlite3)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise ConfigError(f"storage '{storage}' unknown; use {' or '.join(STORAGES)}")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        yield writer


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
        ConfigError: the bag is missing, a topic is absent or is not an Image topic, or ``every`` < 1.
    """
    if every < 1:
        raise ConfigError(f"every={every} must be >= 1")
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

    for topic, t_ns, msg in read_messages(bag, {rgb_topic: IMAGE_TYPE, thermal_topic: IMAGE_TYPE}):
        is_thermal = topic == thermal_topic
        try:
            # A copy: the decoded view may be a reversed-channel or padded view of the message buffer.
            img = np.ascontiguousarray(ic.thermal_from_message(msg) if is_thermal else ic.rgb_from_message(msg))
        except EncodingError as exc:
            log.warning("skipping malformed message on %s: %s", topic, exc)
            continue
        stamp, arrival = ic.stamp_seconds(msg.header.stamp), t_ns * 1e-9
        yield from kept(sync.add_thermal(stamp, img, arrival) if is_thermal else sync.add_rgb(stamp, img, arrival))
    yield from kept(sync.flush())
    log.info("%s: %d RGB frames paired, %d without a thermal frame within %.3f s", bag, n_paired,
             sync.stats.unpaired_rgb, slop)
