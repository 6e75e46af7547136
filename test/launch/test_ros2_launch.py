"""The package as a ROS user installs and starts it: ``colcon build``, the install tree, ``ros2 launch``, stops.

One workspace per session (conftest.py: ``colcon build --packages-select fusion_ros`` of this repository into a
temporary folder, then ``source install/setup.bash``). Against it:

- the ament install layout (package index entry, package.xml, launch, config, models, ``lib/fusion_ros/fusion_node``);
- ``ros2 launch fusion_ros fusion.launch.py namespace:=ns1`` with the installed ``config/fusion.yaml`` changed to
  ``thermal_timeout_s: 1.5`` and every topic remapped: the running node reports 1.5 through its parameter service,
  paired frames come back fused on the remapped topic with the RGB header, and Ctrl-C ends it cleanly;
- repeated stops: Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM to the node (what
  ``ros2 launch`` itself escalates to, and what ``kill`` sends), each ``FUSION_ROS_STOP_REPEATS`` times (20):
  ``ros2 launch`` exits 0 and no traceback is printed;
- ``colcon test`` runs the package's launch tests and reports more than 0 tests, none failed or skipped.

Needs launch_ros, ros2launch and colcon (``make test-ros`` installs them; a ROS 2 install has them).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

_WHY = "needs ros2launch and launch_ros (a ROS 2 install, or `make test-ros` with ../shared/wheels/ros-jazzy-launch)"
pytest.importorskip("launch_ros.actions", reason=_WHY)
pytest.importorskip("ros2launch", reason=_WHY)

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from ros_workspace import PACKAGE, run_checked, tool  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NAMESPACE = "ns1"
REMAPS = {"rgb_image_topic": "/cam/color/image_raw", "rgb_info_topic": "/cam/color/camera_info",
          "thermal_image_topic": "/lwir/image_raw", "fused_image_topic": "/cam/fused/image_raw"}
FUSED_INFO = "/cam/fused/camera_info"
THERMAL_TIMEOUT_S = 1.5                  # the shipped default is 0.5
RGB_W, RGB_H, THERMAL_W, THERMAL_H = 320, 240, 160, 128   # under Fast DDS's default shared-memory segment
RGB_FRAME = "rgb_optical_frame"
N_FRAMES, FRAME_HZ = 30, 15.0
STOP_REPEATS = int(os.environ.get("FUSION_ROS_STOP_REPEATS", "20"))
START_TIMEOUT_S, STOP_TIMEOUT_S = 90.0, 30.0
CLEAN_EXIT = "process has finished cleanly"


# --- the test's side of the graph ----------------------------------------------------------------------------

class FrameRig:
    """Publishes paired RGB/thermal frames (same stamp) and collects the fused output, spinning in a thread."""

    def __init__(self, topics: dict[str, str], fused_info: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("fusion_launch_rig", context=self.context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_rgb = self.node.create_publisher(Image, topics["rgb_image_topic"], reliable)
        self.pub_info = self.node.create_publisher(CameraInfo, topics["rgb_info_topic"], reliable)
        self.pub_thermal = self.node.create_publisher(Image, topics["thermal_image_topic"], reliable)
        self.fused_topic = topics["fused_image_topic"]
        self.sent: dict[tuple[int, int], Image] = {}
        self.fused: list[Image] = []
        self.infos: list[CameraInfo] = []
        self.node.create_subscription(Image, self.fused_topic, self.fused.append, reliable)
        self.node.create_subscription(CameraInfo, fused_info, self.infos.append, reliable)
        rng = np.random.default_rng(0)
        self.rgb = np.ascontiguousarray(rng.integers(0, 60, (RGB_H, RGB_W, 3), dtype=np.uint8))   # a dark scene
        self.thermal = np.full((THERMAL_H, THERMAL_W), 22000, np.uint16)
        self.thermal[40:100, 60:90] = 24000                                                    # a warm object
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def graph_ready(self) -> bool:
        """The node subscribes to all three inputs and publishes the fused topic."""
        return min(self.pub_rgb.get_subscription_count(), self.pub_info.get_subscription_count(),
                   self.pub_thermal.get_subscription_count(), self.node.count_publishers(self.fused_topic)) > 0

    def publish_pair(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        self.pub_thermal.publish(_image(stamp, self.thermal, "mono16", "thermal_optical_frame"))
        self.pub_info.publish(_camera_info(stamp))
        rgb = _image(stamp, self.rgb, "bgr8", RGB_FRAME)
        self.pub_rgb.publish(rgb)
        self.sent[(stamp.sec, stamp.nanosec)] = rgb

    def infos_cover_fused(self) -> bool:
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in self.infos}
        return all((m.header.stamp.sec, m.header.stamp.nanosec) in stamps for m in self.fused)

    def stream(self, hz: float):
        """Publish pairs at ``hz`` until the returned timer is cancelled."""
        return self.node.create_timer(1.0 / hz, self.publish_pair)

    def parameter(self, node_name: str, name: str, timeout_s: float = 20.0):
        """A parameter of a running node, read through its parameter services (rclpy's parameter client)."""
        client = AsyncParameterClient(self.node, node_name)
        assert client.wait_for_services(timeout_sec=timeout_s), f"no parameter services of {node_name}"
        future = client.get_parameters([name])
        assert _wait(future.done, timeout_s), f"get_parameters({name}) on {node_name} did not answer"
        return future.result().values[0]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _image(stamp, arr: np.ndarray, encoding: str, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = arr.shape[:2]
    msg.encoding = encoding
    msg.step = arr.strides[0]
    msg.data = arr.tobytes()
    return msg


def _camera_info(stamp) -> CameraInfo:
    info = CameraInfo()
    info.header.stamp = stamp
    info.header.frame_id = RGB_FRAME
    info.width, info.height = RGB_W, RGB_H
    info.k = [300.0, 0.0, RGB_W / 2, 0.0, 300.0, RGB_H / 2, 0.0, 0.0, 1.0]
    return info


def _wait(cond, timeout_s: float, poll_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(poll_s)
    return bool(cond())


# --- ros2 launch as a subprocess -------------------------------------------------------------------------------

class Ros2Launch:
    """``ros2 launch fusion_ros fusion.launch.py ARGS`` in its own session (process group), output to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([tool("ros2"), "launch", PACKAGE, "fusion.launch.py", *args], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def node_pid(self) -> int | None:
        found = re.search(r"\[fusion_node-1\]: process started with pid \[(\d+)\]", self.output())
        return int(found.group(1)) if found else None

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group: what Ctrl-C in a terminal does (launch and node both get it)."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def terminate_node(self) -> None:
        """SIGTERM to the node while ros2 launch supervises it."""
        pid = self.node_pid()
        assert pid is not None, f"no node pid in the launch output:\n{self.output()[-3000:]}"
        os.kill(pid, signal.SIGTERM)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill what is left of the process group (never more than this launch and its node)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._log.close()


def clean_stop_problems(rc: int | None, output: str) -> list[str]:
    """What is wrong with a stop: a non-zero or missing exit code, a traceback, a node that did not exit 0."""
    problems = []
    if rc != 0:
        problems.append("ros2 launch did not exit" if rc is None else f"ros2 launch exited {rc}")
    if "Traceback" in output:
        problems.append("a traceback was printed")
    if CLEAN_EXIT not in output:
        died = re.search(r"process has died \[[^\]]*\]", output)
        problems.append(f"the node did not finish cleanly ({died.group(0) if died else 'no exit line'})")
    return problems


# --- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def params_file(colcon_workspace, tmp_path_factory) -> Path:
    """The installed config/fusion.yaml, with its own node key, and thermal_timeout_s changed to 1.5."""
    doc = yaml.safe_load((colcon_workspace.prefix / "share" / PACKAGE / "config" / "fusion.yaml").read_text())
    (body,) = doc.values()
    assert body["ros__parameters"]["thermal_timeout_s"] != THERMAL_TIMEOUT_S
    body["ros__parameters"]["thermal_timeout_s"] = THERMAL_TIMEOUT_S
    path = tmp_path_factory.mktemp("params") / "fusion_ns1.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def remapped_launch(colcon_workspace, params_file, tmp_path_factory):
    """The node under ros2 launch in namespace ns1 with the changed params file and remapped topics, plus the rig."""
    args = [f"namespace:={NAMESPACE}", f"params_file:={params_file}", "backend:=onnxruntime",
            *(f"{k}:={v}" for k, v in REMAPS.items())]
    launch = Ros2Launch(args, colcon_workspace.env, tmp_path_factory.mktemp("launch") / "ros2_launch.log")
    rig = FrameRig(REMAPS, FUSED_INFO)
    try:
        ready = _wait(lambda: rig.graph_ready() or launch.proc.poll() is not None, START_TIMEOUT_S)
        assert ready and launch.proc.poll() is None, \
            f"fusion_node did not come up on the remapped topics:\n{launch.output()[-4000:]}"
        yield launch, rig
    finally:
        rig.close()
        launch.close()


# --- tests -----------------------------------------------------------------------------------------------------

def test_install_tree_has_the_ament_layout(colcon_workspace):
    prefix = colcon_workspace.prefix
    share = prefix / "share" / PACKAGE
    for path in (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE, share / "package.xml",
                 share / "launch" / "fusion.launch.py", share / "launch" / "fusion_bag.launch.py",
                 share / "config" / "fusion.yaml", share / "config" / "fastdds_shm.xml",
                 share / "models" / "fusion_lite.onnx", share / "models" / "fusion_lite.json"):
        assert path.is_file(), f"{path.relative_to(prefix)} missing from the install tree"
    assert sorted(p.name for p in (share / "config" / "cameras").glob("*.yaml")), "no camera params files installed"
    assert not (share / "models" / "stage1").exists(), "training intermediates (models/stage1) are not installed"
    assert not (share / "models" / "candidates").exists(), "unshipped models (models/candidates) are not installed"
    node = prefix / "lib" / PACKAGE / "fusion_node"
    assert node.is_file() and os.access(node, os.X_OK), "lib/fusion_ros/fusion_node missing or not executable"
    out = run_checked([tool("ros2"), "pkg", "executables", PACKAGE], cwd=colcon_workspace.root,
                      env=colcon_workspace.env, timeout=60, what="ros2 pkg executables")
    assert f"{PACKAGE} fusion_node" in out.splitlines(), out


def test_params_file_value_is_in_effect_in_the_namespace(remapped_launch):
    _, rig = remapped_launch
    value = rig.parameter(f"/{NAMESPACE}/fusion_node", "thermal_timeout_s")
    assert value.double_value == THERMAL_TIMEOUT_S, \
        f"/{NAMESPACE}/fusion_node reports thermal_timeout_s={value.double_value} (params file: {THERMAL_TIMEOUT_S})"


def test_paired_frames_come_back_fused_on_the_remapped_topic(remapped_launch):
    launch, rig = remapped_launch
    t0 = time.monotonic()
    for i in range(N_FRAMES):
        rig.publish_pair()
        time.sleep(max(0.0, t0 + (i + 1) / FRAME_HZ - time.monotonic()))
    # camera_info follows its image: wait for the info of every fused frame, the last one included
    _wait(lambda: len(rig.fused) >= N_FRAMES and rig.infos_cover_fused(), 10.0)
    fused, infos = list(rig.fused), {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in rig.infos}
    assert len(fused) >= 0.9 * N_FRAMES, \
        f"{len(fused)} of {N_FRAMES} pairs came back on {REMAPS['fused_image_topic']}:\n{launch.output()[-3000:]}"
    for msg in fused:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        assert key in rig.sent, f"fused stamp {key} is not an RGB input stamp"
        assert msg.header.frame_id == RGB_FRAME
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("bgr8", RGB_W, RGB_H, RGB_W * 3)
        assert key in infos and infos[key].header.frame_id == RGB_FRAME, f"no {FUSED_INFO} with stamp {key}"


def test_ctrl_c_ends_the_remapped_launch_cleanly(remapped_launch):
    launch, _ = remapped_launch
    launch.ctrl_c()
    rc = launch.wait(STOP_TIMEOUT_S)
    output = launch.output()
    assert not clean_stop_problems(rc, output), f"{clean_stop_problems(rc, output)}:\n{output[-4000:]}"


@pytest.mark.parametrize("stop", ["ctrl_c", "terminate_node"])
def test_repeated_stops_exit_0_without_traceback(stop, colcon_workspace, tmp_path, capsys):
    """Stops at a random moment (0-0.3 s) after the node fused its first frame, with frames still flowing."""
    rig = FrameRig({"rgb_image_topic": "/stop/rgb/image_raw", "rgb_info_topic": "/stop/rgb/camera_info",
                    "thermal_image_topic": "/stop/thermal/image_raw", "fused_image_topic": "/stop/fused/image_raw"},
                   "/stop/fused/camera_info")
    timer = rig.stream(FRAME_HZ)
    rng = random.Random(12)
    failures, durations = [], []
    try:
        for i in range(STOP_REPEATS):
            launch = Ros2Launch(["namespace:=stop", "backend:=onnxruntime"], colcon_workspace.env,
                                tmp_path / f"{stop}_{i}.log")
            try:
                fused_before = len(rig.fused)
                up = _wait(lambda: len(rig.fused) > fused_before or launch.proc.poll() is not None, START_TIMEOUT_S)
                assert up and launch.proc.poll() is None, f"stop {i}: the node never fused:\n{launch.output()[-3000:]}"
                time.sleep(rng.uniform(0.0, 0.3))
                t_stop = time.monotonic()
                getattr(launch, stop)()
                rc = launch.wait(STOP_TIMEOUT_S)
                durations.append(time.monotonic() - t_stop)
                problems = clean_stop_problems(rc, launch.output())
                if problems:
                    failures.append((i, problems, launch.output()))
            finally:
                launch.close()
    finally:
        timer.cancel()
        rig.close()
    with capsys.disabled():
        print(f"\n{stop}: {STOP_REPEATS - len(failures)} of {STOP_REPEATS} stops exited 0 without a traceback "
              f"(stop took {np.median(durations):.2f} s median, {max(durations):.2f} s max)")
    assert not failures, (f"{len(failures)} of {STOP_REPEATS} {stop} stops were not clean: "
                          f"{[(i, p) for i, p, _ in failures]}\nfirst one's output:\n{failures[0][2][-4000:]}")


def test_colcon_test_runs_the_package_tests(colcon_workspace, capsys):
    ws = colcon_workspace
    env = dict(ws.env, FUSION_ROS_REQUIRE_LAUNCH="1")
    # this module builds workspaces itself, so colcon test runs the other launch tests (no recursion)
    run_checked(ws.colcon("test", "--packages-select", PACKAGE, "--pytest-args", "test/launch",
                          f" --ignore=test/launch/{Path(__file__).name}"),
                cwd=ws.root, env=env, timeout=900, what="colcon test")
    result = subprocess.run([tool("colcon"), "test-result", "--test-result-base", str(ws.root / "build"), "--verbose"],
                            cwd=ws.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=60, check=False)
    summary = re.search(r"Summary: (\d+) tests?, (\d+) errors?, (\d+) failures?, (\d+) skipped", result.stdout)
    assert summary, f"no summary from colcon test-result:\n{result.stdout[-3000:]}"
    with capsys.disabled():
        print(f"\ncolcon test-result: {summary.group(0)}")
    tests, errors, failed, skipped = map(int, summary.groups())
    assert tests > 0 and errors == failed == skipped == 0, result.stdout[-4000:]
