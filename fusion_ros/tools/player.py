"""A camera-pair player and a fused-topic recorder over real rclpy, for the demo, the tests and the benchmark.

The player publishes ``rgb/image_raw`` + ``rgb/camera_info`` at the RGB rate and ``thermal/image_raw`` at its own
rate and size, like two unsynchronised cameras: each message is stamped with the current ROS time when it is
sent. Frame sources: the procedural night scene (default), image pairs, a video pair (see :func:`load_frames`),
a recorded bag (:func:`read_bag_frames`).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.io.clips import iter_frames, video_fps
from fusion_ros.io.images import read_ir, read_vis
from fusion_ros.io.pairs import find_pairs
from fusion_ros.pipeline import image_codec as ic

__all__ = ["Frames", "load_frames", "read_bag_frames", "PlayerNode", "RecorderNode", "image_msg", "camera_info_msg"]

DRIVER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Frames:
    """A paired sequence: ``thermal[i]`` (h, w) uint8/uint16 and ``rgb[i]`` (H, W, 3) uint8 RGB at ``fps``."""

    thermal: list[np.ndarray]
    rgb: list[np.ndarray]
    fps: float

    def __len__(self) -> int:
        return len(self.rgb)


def load_frames(pairs: str | None = None, video: Sequence[str] | None = None, frames: int = 90,
                rgb_size: tuple[int, int] = (640, 480), thermal_size: tuple[int, int] = (320, 256),
                fps: float = 30.0, seed: int = 0) -> Frames:
    """Load a paired sequence: the night scene (default), ``pairs`` dir (ir/ + vi/), or ``video`` (IR, VI).

    Files are read by :mod:`fusion_ros.io` at their bit depth: 8-bit thermal is published as mono8, 16-bit (and
    the scene's) as mono16.
    """
    if pairs:
        return _pair_frames(Path(pairs), frames, fps)
    if video:
        return _video_frames(video[0], video[1], frames, fps)
    from fusion_ros.tools.scene import NightScene, SceneConfig

    scene = NightScene(SceneConfig(rgb_size=rgb_size, thermal_size=thermal_size, fps=fps, frames=frames, seed=seed))
    th, vi = [], []
    for t, r, _ in scene:
        th.append(t)
        vi.append(r)
    return Frames(th, vi, fps)


def _pair_frames(root: Path, frames: int, fps: float) -> Frames:
    try:
        found = find_pairs(root)[:frames]
    except FusionError as exc:
        raise ConfigError(f"--pairs {root}: {exc}") from None
    th = [read_ir(p.ir_path) for p in found]
    vi = [read_vis(p.vi_path) for p in found]
    # Pairs of one folder may differ in size; the stream needs one size: use the first pair's.
    w, h = vi[0].shape[1] // 2 * 2, vi[0].shape[0]
    return Frames([cv2.resize(t, (w, h)) for t in th], [cv2.resize(v, (w, h)) for v in vi], fps)


def _video_frames(ir_path: str, vi_path: str, frames: int, fps: float) -> Frames:
    try:
        vfps = video_fps(vi_path) or fps
        pairs = zip(iter_frames(ir_path, "ir"), iter_frames(vi_path, "vi"))
        th, vi = [], []
        for (_, t), (_, v) in itertools.islice(pairs, frames):
            th.append(t)
            vi.append(v)
    except FusionError as exc:
        raise ConfigError(f"--video {ir_path} {vi_path}: {exc}") from None
    if not vi:
        raise ConfigError(f"--video {ir_path} {vi_path}: no frame could be read")
    return Frames(th, vi, vfps)


def read_bag_frames(path: str | Path, rgb_topic: str, thermal_topic: str, max_frames: int = 1000) -> Frames:
    """The first ``max_frames`` RGB frames of a bag that have a thermal partner, paired as the node pairs them.

    Returns:
        :class:`Frames` at the bag's mean RGB rate (30 when it has one frame).
    """
    from fusion_ros.io.bag import iter_image_pairs

    pairs = list(itertools.islice(iter_image_pairs(path, rgb_topic, thermal_topic), max_frames))
    if not pairs:
        raise ConfigError(f"no RGB frame of '{rgb_topic}' has a thermal partner on '{thermal_topic}' in {path}")
    stamps = [p.rgb_stamp for p in pairs]
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 30.0
    return Frames([p.thermal for p in pairs], [p.rgb for p in pairs], fps)


def image_msg(img: np.ndarray, encoding: str, frame_id: str) -> Image:
    """Build an Image (header stamp left at zero) from an array in ``encoding``'s layout."""
    enc = ic.encode(img, encoding)
    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding = enc.height, enc.width, enc.encoding
    msg.is_bigendian, msg.step, msg.data = int(enc.is_bigendian), enc.step, enc.data
    return msg


def camera_info_msg(width: int, height: int, frame_id: str) -> CameraInfo:
    """A plausible pinhole camera_info (60 degree horizontal field of view)."""
    f = width / (2 * np.tan(np.radians(30)))
    info = CameraInfo()
    info.header.frame_id = frame_id
    info.width, info.height = width, height
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class PlayerNode(Node):
    """Publishes a :class:`Frames` sequence as two free-running cameras.

    Args:
        frames: the sequence.
        rgb_encoding: encoding of ``rgb/image_raw`` (any of :data:`~fusion_ros.pipeline.image_codec.RGB_ENCODINGS`).
        namespace: node namespace (topics are relative).
    """

    def __init__(self, frames: Frames, rgb_encoding: str = "bgr8", name: str = "fusion_player",
                 namespace: str = "", context=None) -> None:
        super().__init__(name, namespace=namespace, context=context)
        self.frames = frames
        self.pub_rgb = self.create_publisher(Image, "rgb/image_raw", DRIVER_QOS)
        self.pub_info = self.create_publisher(CameraInfo, "rgb/camera_info", DRIVER_QOS)
        self.pub_thermal = self.create_publisher(Image, "thermal/image_raw", DRIVER_QOS)
        # Messages are built once up front so that the play loop only stamps and sends.
        self.rgb_msgs = [image_msg(ic.from_rgb(r, rgb_encoding), rgb_encoding, "rgb_camera") for r in frames.rgb]
        th_enc = "mono16" if frames.thermal[0].dtype == np.uint16 else "mono8"
        self.thermal_msgs = [image_msg(t, th_enc, "thermal_camera") for t in frames.thermal]
        h, w = frames.rgb[0].shape[:2]
        self.info = camera_info_msg(w, h, "rgb_camera")
        self.sent_rgb: list[Image] = []
        self.sent_frame: list[int] = []       # frame index of each entry of sent_rgb

    def wait_for_subscribers(self, timeout_s: float = 20.0) -> bool:
        """Wait until rgb and thermal each have a subscriber (the node is up)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.pub_rgb.get_subscription_count() and self.pub_thermal.get_subscription_count():
                return True
            time.sleep(0.05)
        return False

    def play(self, rgb_hz: float = 30.0, thermal_hz: float = 9.0, n_rgb: int | None = None,
             thermal_gap: tuple[float, float] | None = None, mutate=None) -> None:
        """Publish ``n_rgb`` RGB frames at ``rgb_hz`` and thermal at ``thermal_hz`` (blocking).

        Args:
            thermal_gap: (start, end) seconds after the start during which no thermal is sent (dropout).
            mutate: optional ``f(kind, index, msg) -> msg | None`` applied before sending (bad-input tests);
                None from it skips the message.
        """
        n_rgb = n_rgb or len(self.frames)
        t0 = time.monotonic()
        events = [(i / rgb_hz, 0, i) for i in range(n_rgb)]
        duration = n_rgb / rgb_hz
        events += [(j / thermal_hz, 1, j) for j in range(int(duration * thermal_hz) + 1)]
        events.sort()
        for at, kind, idx in events:
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # The epsilon: i / hz * hz is just below i for some i (123 / 15 * 15 = 122.99...), which would
            # repeat one frame and skip the next.
            frame = min(int(at * self.frames.fps + 1e-6), len(self.frames) - 1)
            stamp = self.get_clock().now().to_msg()
            if kind == 0:
                msg = self.rgb_msgs[frame % len(self.rgb_msgs)]
                msg.header.stamp = stamp
                # camera_info first, as camera drivers do, so that it is there when the image is processed.
                self.info.header = msg.header
                self.pub_info.publish(self.info)
                out = mutate("rgb", idx, msg) if mutate else msg
                if out is not None:
                    self.pub_rgb.publish(out)
                    self.sent_rgb.append(_header_copy(out))
                    self.sent_frame.append(frame % len(self.rgb_msgs))
            else:
                if thermal_gap and thermal_gap[0] <= at < thermal_gap[1]:
                    continue
                msg = self.thermal_msgs[frame % len(self.thermal_msgs)]
                msg.header.stamp = stamp
                out = mutate("thermal", idx, msg) if mutate else msg
                if out is not None:
                    self.pub_thermal.publish(out)


def _header_copy(msg: Image) -> Image:
    h = Image()
    h.header.stamp.sec, h.header.stamp.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
    h.header.frame_id = msg.header.frame_id
    h.encoding, h.width, h.height = msg.encoding, msg.width, msg.height
    return h


class RecorderNode(Node):
    """Records ``fused/image_raw``, ``fused/camera_info`` and ``/diagnostics`` (thread-safe lists)."""

    def __init__(self, name: str = "fusion_recorder", namespace: str = "", depth: int = 100, context=None) -> None:
        super().__init__(name, namespace=namespace, context=context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.images: list[Image] = []
        self.infos: list[CameraInfo] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.arrivals: list[float] = []
        self.create_subscription(Image, "fused/image_raw", self._image, qos)
        self.create_subscription(CameraInfo, "fused/camera_info", self._info, qos)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 50)

    def _image(self, msg: Image) -> None:
        with self.lock:
            self.images.append(msg)
            self.arrivals.append(time.monotonic())

    def _info(self, msg: CameraInfo) -> None:
        with self.lock:
            self.infos.append(msg)

    def _diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics.append(msg)

    def last_status(self, name_prefix: str = "fusion_node") -> dict[str, str] | None:
        """Key/values (+ 'level', 'message') of the newest diagnostics status whose name starts with the prefix."""
        with self.lock:
            for arr in reversed(self.diagnostics):
                for st in arr.status:
                    if st.name.startswith(name_prefix):
                        d = {kv.key: kv.value for kv in st.values}
                        d["level"] = str(int.from_bytes(st.level, "little") if isinstance(st.level, bytes)
                                         else int(st.level))
                        d["message"] = st.message
                        return d
        return None
