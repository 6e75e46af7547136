"""Fixtures for the tests over real rclpy / Fast DDS (no mocks).

Each test gets its own rclpy Context on a random ROS_DOMAIN_ID (1..200) so that parallel runs do not
cross-talk, and the shipped Fast DDS shared-memory profile (config/fastdds_shm.xml) is enabled for this
process and the subprocesses it starts.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="the ROS tests need rclpy (ros-jazzy-rclpy wheels)")

from node_processes import node_env, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "config" / "fastdds_shm.xml"

# Fast DDS reads the profile once per process, when the first participant is created.
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE))
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(PROFILE))


@pytest.fixture
def domain_id() -> int:
    return random.randint(1, 200)


@pytest.fixture
def ros_context(domain_id):
    """A private, initialised rclpy Context on a random domain; shut down after the test."""
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    yield ctx
    rclpy.try_shutdown(context=ctx)


class Spinner:
    """Spins nodes in a background thread (a real executor) until stopped."""

    def __init__(self, context, *nodes) -> None:
        from rclpy.executors import SingleThreadedExecutor

        # One thread, as the node's own main() spins: under the GIL rclpy's MultiThreadedExecutor only adds
        # scheduling work, and at 30 Hz of 640x480 images it starved the publishing thread (12 of 30 frames
        # delivered, all 30 with this executor).
        self.executor = SingleThreadedExecutor(context=context)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


@pytest.fixture
def spin(ros_context):
    spinners = []

    def start(*nodes):
        s = Spinner(ros_context, *nodes)
        spinners.append(s)
        return s

    yield start
    for s in spinners:
        s.stop()


@pytest.fixture
def start_node(domain_id, tmp_path):
    """``start_node(ros_args) -> (process, log file)``: ``python -m fusion_ros.ros.node --ros-args *ros_args`` as its
    own process on this test's domain, its output in a log file; stopped after the test."""
    from fusion_ros.tools.processes import terminate_process

    started = []

    def start(ros_args: list[str]):
        log = open(tmp_path / f"node{len(started)}.log", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "fusion_ros.ros.node", "--ros-args", *ros_args],
                                env=node_env(domain_id), stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        return proc, log

    yield start
    for proc, log in started:
        terminate_process(proc)
        log.close()


@pytest.fixture
def graph_up():
    """``graph_up(recorder, player, timeout) -> bool``: the node in another process is up (diagnostics arrive, it
    subscribes to both cameras and publishes the fused topic)."""
    def up(rec, player, timeout: float) -> bool:
        return wait_for(lambda: rec.last_status() is not None and player.pub_rgb.get_subscription_count() >= 1
                        and player.pub_thermal.get_subscription_count() >= 1
                        and rec.count_publishers("fused/image_raw") >= 1, timeout)
    return up


@pytest.fixture
def node_up(ros_context, spin, start_node, graph_up):
    """``node_up(node_args, frames, timeout) -> (process, log, player, recorder)``: the node in a process of its own,
    a bgr8 player of ``frames`` and a spinning recorder in this one, once the graph is up (the test fails with the
    node's log if it does not come up)."""
    from fusion_ros.tools.player import PlayerNode, RecorderNode

    def up(node_args: list[str], frames, timeout: float = 25.0):
        proc, log = start_node(node_args)
        player = PlayerNode(frames, rgb_encoding="bgr8", context=ros_context)
        rec = RecorderNode(context=ros_context)
        spin(rec)
        ready = graph_up(rec, player, timeout)
        log.seek(0)
        assert ready, f"node not up: rc={proc.poll()} log:\n{log.read()[-3000:]}"
        return proc, log, player, rec
    return up
