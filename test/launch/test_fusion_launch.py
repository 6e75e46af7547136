"""launch_pytest: start the node through launch/fusion.launch.py, publish paired frames, check the fused output.

The node runs in its own process, started by the launch file with every input and output topic remapped, so this
also checks the remappings (including ``fused/camera_info`` following ``fused_image_topic``). Frames come from the
procedural night scene (warm pedestrians in a dark, foggy street): RGB bgr8 320x240 at 15 Hz, thermal mono16
160x128 at 10 Hz, i.e. different rates and sizes. 320x240 keeps each image under Fast DDS's default shared-memory
segment, so the test does not depend on a transport profile.

Needs launch_pytest and launch_ros (a ROS 2 Jazzy install, or ``make test-ros``: the Jazzy wheels in
``../shared/wheels/ros-jazzy-launch``); skipped elsewhere with that reason. The node comes from an installed
fusion_ros: the one in the ament index (``colcon test``, a sourced workspace), else a fresh ``colcon build`` of
this repository (conftest.py). Run: ``make test-ros``, or ``colcon test --packages-select fusion_ros
--pytest-args test/launch`` in a workspace (docs/deployment.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

_WHY = "launch_pytest not importable (needs a ROS 2 install, or `make test-ros` with ../shared/wheels/ros-jazzy-launch)"
launch_pytest = pytest.importorskip("launch_pytest", reason=_WHY)
pytest.importorskip("launch_ros.actions", reason=_WHY)

import rclpy  # noqa: E402
from rclpy.time import Time  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from fusion_ros.tools.scene import NightScene, SceneConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NS = "/launch_test"
TOPICS = {"rgb_image_topic": f"{NS}/camera/image_raw", "rgb_info_topic": f"{NS}/camera/camera_info",
          "thermal_image_topic": f"{NS}/thermal_cam/image_raw", "fused_image_topic": f"{NS}/fused_cam/image_raw"}
FUSED_INFO = f"{NS}/fused_cam/camera_info"
RGB_W, RGB_H, FRAME_ID = 320, 240, "rgb_optical_frame"
SCENE_FPS, RGB_EVERY, THERMAL_EVERY = 30.0, 2, 3       # scene ticks at 30 Hz: RGB 15 Hz, thermal 10 Hz
N_RGB = 30


@launch_pytest.fixture
def fusion_launch(installed_package):
    args = dict(TOPICS, backend="onnxruntime", log_level="info",
                params_file=str(REPO / "config" / "fusion.yaml"))
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(REPO / "launch" / "fusion.launch.py")),
                                 launch_arguments=args.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


def _image(stamp, arr: np.ndarray, encoding: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = FRAME_ID if encoding == "bgr8" else "thermal_optical_frame"
    msg.height, msg.width = arr.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = arr.strides[0]
    msg.data = arr.tobytes()
    return msg


def _camera_info(stamp) -> CameraInfo:
    info = CameraInfo()
    info.header.stamp = stamp
    info.header.frame_id = FRAME_ID
    info.width, info.height = RGB_W, RGB_H
    info.distortion_model = "plumb_bob"
    info.k = [300.0, 0.0, RGB_W / 2, 0.0, 300.0, RGB_H / 2, 0.0, 0.0, 1.0]
    info.p = [300.0, 0.0, RGB_W / 2, 0.0, 0.0, 300.0, RGB_H / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def _spin_until(executor, done, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if done():
            return True
        executor.spin_once(timeout_sec=0.02)
    return done()


def _stamp_key(stamp) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


def _infos_cover(fused: list[Image], infos: list[CameraInfo]) -> bool:
    """Every fused frame received so far has its fused/camera_info."""
    info_stamps = {_stamp_key(m.header.stamp) for m in infos}
    return all(_stamp_key(m.header.stamp) in info_stamps for m in fused)


class _ScenePublisher:
    """Publishes the night scene in real time (RGB 15 Hz + camera_info, thermal 10 Hz), spinning meanwhile."""

    def __init__(self, node, executor, pub_rgb, pub_info, pub_th) -> None:
        self.node, self.executor = node, executor
        self.pub_rgb, self.pub_info, self.pub_th = pub_rgb, pub_info, pub_th

    def scene(self, seed: int, until=lambda: False, limit_s: float = float("inf")) -> dict[tuple[int, int], np.ndarray]:
        """Publish N_RGB RGB frames (or until ``until()`` / ``limit_s``); the BGR sent, by stamp."""
        scene = NightScene(SceneConfig(rgb_size=(RGB_W, RGB_H), thermal_size=(160, 128), fps=SCENE_FPS,
                                       frames=N_RGB * RGB_EVERY, seed=seed))
        base = self.node.get_clock().now().nanoseconds
        sent: dict[tuple[int, int], np.ndarray] = {}
        t0 = time.monotonic()
        for i, (thermal, rgb, t) in enumerate(scene):
            if until() or time.monotonic() - t0 > limit_s:
                break
            stamp = Time(nanoseconds=base + int(t * 1e9)).to_msg()
            if i % THERMAL_EVERY == 0:
                self.pub_th.publish(_image(stamp, np.ascontiguousarray(thermal), "mono16"))
            if i % RGB_EVERY == 0:
                bgr = np.ascontiguousarray(rgb[:, :, ::-1])
                self.pub_info.publish(_camera_info(stamp))
                self.pub_rgb.publish(_image(stamp, bgr, "bgr8"))
                sent[_stamp_key(stamp)] = bgr
            # real-time pacing, spinning meanwhile so outputs are collected as they come
            _spin_until(self.executor, lambda: False, max(0.0, t0 + t + 1.0 / SCENE_FPS - time.monotonic()))
        return sent


@pytest.mark.launch(fixture=fusion_launch)
def test_fused_output_carries_rgb_header_encoding_and_size():
    rclpy.init()
    node = rclpy.create_node("fusion_launch_tester")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        pub_rgb = node.create_publisher(Image, TOPICS["rgb_image_topic"], reliable)
        pub_info = node.create_publisher(CameraInfo, TOPICS["rgb_info_topic"], reliable)
        pub_th = node.create_publisher(Image, TOPICS["thermal_image_topic"], reliable)
        fused: list[Image] = []
        infos: list[CameraInfo] = []
        node.create_subscription(Image, TOPICS["fused_image_topic"], fused.append, reliable)
        node.create_subscription(CameraInfo, FUSED_INFO, infos.append, reliable)

        # The node subscribes once configured (model loaded): wait for all three inputs and the output to match.
        matched = _spin_until(executor, lambda: min(pub_rgb.get_subscription_count(), pub_info.get_subscription_count(),
                                                    pub_th.get_subscription_count(),
                                                    node.count_publishers(TOPICS["fused_image_topic"])) > 0, 60.0)
        assert matched, "fusion_node did not subscribe to the remapped topics within 60 s (see its log above)"

        # A matched publisher may still be unknown to the node's subscriber for a moment (discovery runs both
        # ways, best effort drops what comes before): frames are counted once a first fused frame has come back.
        publish = _ScenePublisher(node, executor, pub_rgb, pub_info, pub_th)
        warm = publish.scene(seed=5, until=lambda: len(fused) > 0, limit_s=30.0)
        assert fused, f"no fused frame within 30 s of {len(warm)} RGB frames (see the node's log above)"
        sent = publish.scene(seed=3)
        # camera_info follows its image: wait for the info of every fused frame, the last one included
        fused_here = lambda: [m for m in fused if _stamp_key(m.header.stamp) in sent]  # noqa: E731
        _spin_until(executor, lambda: len(fused_here()) >= len(sent) and _infos_cover(fused, infos), 10.0)
        strays = [_stamp_key(m.header.stamp) for m in fused if _stamp_key(m.header.stamp) not in sent | warm]
        assert not strays, f"fused stamps {strays[:3]} are not RGB input stamps (never now())"
        fused = fused_here()

        assert len(sent) == N_RGB
        assert len(fused) >= 0.9 * N_RGB, f"only {len(fused)} of {N_RGB} RGB frames produced a fused frame"
        info_by_stamp = {_stamp_key(m.header.stamp): m for m in infos}
        changed = 0
        for msg in fused:
            key = _stamp_key(msg.header.stamp)
            assert msg.header.frame_id == FRAME_ID
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("bgr8", RGB_W, RGB_H, RGB_W * 3)
            assert key in info_by_stamp, f"no fused/camera_info with stamp {key}"
            assert info_by_stamp[key].header.frame_id == FRAME_ID
            assert list(info_by_stamp[key].k) == list(_camera_info(msg.header.stamp).k)
            out = np.frombuffer(bytes(msg.data), np.uint8).reshape(RGB_H, RGB_W, 3)
            changed += float(np.abs(out.astype(np.int16) - sent[key]).mean()) > 1.0
        # fusing, not passing the RGB through: the warm pedestrians change the dark RGB picture
        assert changed >= 0.9 * len(fused), f"only {changed} of {len(fused)} outputs differ from their RGB input"
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
