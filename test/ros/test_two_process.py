"""The node as its own process (``python -m fusion_ros.ros.node``) fed by a player in this process, over DDS
with the shipped Fast DDS shared-memory profile."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from node_processes import node_env, wait_for

from fusion_ros.tools.player import load_frames

pytestmark = pytest.mark.ros

NODE_ARGS = ["-p", "inference_size:=[160,120]", "-p", "threads:=1", "-p", "backend:=onnxruntime",
             "-p", "diagnostics_period_s:=0.2",
             # QoS override through the standard mechanism: a deeper input queue absorbs scheduling hiccups.
             "-p", "qos_overrides./rgb/image_raw.subscription.depth:=10"]


def test_two_process_fused_stream(node_up):
    frames = load_frames(frames=30, rgb_size=(640, 480), thermal_size=(320, 256))
    proc, _, player, rec = node_up(NODE_ARGS, frames)
    time.sleep(0.3)
    player.play(rgb_hz=30.0, thermal_hz=9.0, n_rgb=30)     # RGB bgr8 640x480 @30 Hz, thermal mono16 320x256 @9 Hz
    wait_for(lambda: len(rec.images) >= 30 and len(rec.infos) >= 30, 3.0)
    time.sleep(0.5)

    sent = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in player.sent_rgb}
    assert len(sent) == 30
    got = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in rec.images}
    st = rec.last_status()
    # Every frame is answered or, when the machine is too busy to fuse it in time, counted as dropped.
    assert len(got) >= 20 and len(got) + int(st["dropped_frames"]) >= 28, \
        f"only {len(got)} of 30 RGB frames produced an output, {st['dropped_frames']} counted as dropped"
    for key, img in got.items():
        assert key in sent
        assert img.header.frame_id == sent[key].header.frame_id == "rgb_camera"
        assert (img.encoding, img.width, img.height) == ("bgr8", 640, 480)
        assert len(img.data) == img.step * img.height
    infos = {(i.header.stamp.sec, i.header.stamp.nanosec): i for i in rec.infos}
    for key in got:
        assert key in infos and infos[key].header.frame_id == "rgb_camera"
        assert (infos[key].width, infos[key].height) == (640, 480)
    assert st["mode"] == "fusing" and int(st["fused_frames"]) >= len(got) - 1, st
    assert float(st["latency_ms_median"]) > 0
    assert proc.poll() is None, "node died"


def test_bad_parameter_exits_naming_it(domain_id):
    out = subprocess.run([sys.executable, "-m", "fusion_ros.ros.node", "--ros-args", "-p",
                          "thermal_range:=[5000.0,1000.0]"], env=node_env(domain_id), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert "thermal_range" in out.stdout + out.stderr


def test_ctrl_c_pressed_again_and_again_still_exits_0(node_up):
    """SIGINT every 20 ms until the node is gone: the ones during cleanup, and the ones while Python exits (when it
    has put the default handlers back), must not turn a clean stop into a death by signal."""
    import signal

    frames = load_frames(frames=10, rgb_size=(320, 240), thermal_size=(160, 128))
    proc, log, player, _ = node_up(NODE_ARGS, frames)
    player.play(rgb_hz=30.0, thermal_hz=30.0, n_rgb=10)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 10.0:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    rc = proc.wait(5.0)
    log.seek(0)
    text = log.read()
    assert rc == 0 and "Traceback" not in text, f"rc={rc} after {time.monotonic() - t0:.2f} s:\n{text[-3000:]}"
