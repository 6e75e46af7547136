"""The fusion node in-process over real rclpy/DDS: headers, thermal dropout, bad input, parameters."""

from __future__ import annotations

import copy
import time
from array import array

import numpy as np
import pytest
from rclpy.parameter import Parameter

from fusion_ros.ros.node import FusionNode
from fusion_ros.tools.player import PlayerNode, RecorderNode, load_frames

pytestmark = pytest.mark.ros

# Small inference size: these tests check the node's plumbing, not the network's speed on a busy 2-core box.
BASE = {"inference_size": [160, 120], "threads": 1, "diagnostics_period_s": 0.2, "backend": "onnxruntime"}


def _node(ctx, **params) -> FusionNode:
    values = {**BASE, **params, "autostart": False}
    node = FusionNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    return node


@pytest.fixture(scope="module")
def frames():
    return load_frames(frames=30, rgb_size=(640, 480), thermal_size=(320, 256))


def _start(ros_context, spin, frames, **params):
    node = _node(ros_context, **params)
    assert node.trigger_configure().name == "SUCCESS"
    assert node.trigger_activate().name == "SUCCESS"
    player = PlayerNode(frames, rgb_encoding="bgr8", context=ros_context)
    rec = RecorderNode(context=ros_context)
    spin(node, rec)
    assert player.wait_for_subscribers(10.0)
    # The recorder must be matched with the node's publishers too, or the first outputs are lost.
    assert _wait(lambda: node._pub_image.get_subscription_count() >= 1 and rec.count_publishers("fused/image_raw") >= 1,
                 10.0)
    return node, player, rec


def _wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.05)
    return cond()


def test_fused_frames_carry_the_rgb_header(ros_context, spin, frames):
    node, player, rec = _start(ros_context, spin, frames)
    player.play(rgb_hz=30.0, thermal_hz=9.0, n_rgb=30)
    _wait(lambda: len(rec.images) >= len(player.sent_rgb), 3.0)
    sent = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in player.sent_rgb}
    # Every frame is answered or, when the machine is too busy to fuse it in time, counted as dropped.
    assert len(rec.images) >= 0.5 * len(sent)
    assert len(rec.images) + node.stream.stats.dropped >= len(sent) - 2, (len(rec.images), node.stream.stats)
    for img in rec.images:
        key = (img.header.stamp.sec, img.header.stamp.nanosec)
        assert key in sent and img.header.frame_id == "rgb_camera"
        assert (img.encoding, img.width, img.height, img.step) == ("bgr8", 640, 480, 640 * 3)
    info_keys = {(i.header.stamp.sec, i.header.stamp.nanosec) for i in rec.infos}
    assert {(i.header.stamp.sec, i.header.stamp.nanosec) for i in rec.images[1:]} <= info_keys | set()
    assert node.fused_frames > 0.7 * len(rec.images)


def test_thermal_dropout_passthrough_then_resume(ros_context, spin):
    frames = load_frames(frames=60, rgb_size=(320, 240), thermal_size=(160, 128))
    node, player, rec = _start(ros_context, spin, frames, thermal_timeout_s=0.25)
    modes = []
    t0 = time.monotonic()
    stop = False

    def watch():
        while not stop:
            st = rec.last_status()
            if st:
                modes.append((time.monotonic() - t0, st["mode"], st["level"]))
            time.sleep(0.05)

    import threading
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    player.play(rgb_hz=30.0, thermal_hz=9.0, n_rgb=75, thermal_gap=(0.5, 1.6))
    time.sleep(0.5)
    stop = True
    w.join()
    # Output kept flowing through the gap: no hole longer than the timeout plus a few frames.
    gaps = np.diff(rec.arrivals)
    assert len(rec.images) + node.stream.stats.dropped >= 0.8 * 75 and gaps.max() < 0.25 + 0.2, (gaps.max(), node.rgb_rate.count, node.thermal_rate.count, node.fused_frames, node.passthrough_frames, dict(node.malformed), len(rec.images))
    # Passthrough frames are the RGB input unchanged; fused ones are not.
    inputs = {bytes(m.data) for m in player.rgb_msgs}
    unchanged = sum(bytes(m.data) in inputs for m in rec.images)
    assert unchanged >= 15 and node.passthrough_frames >= unchanged
    # /diagnostics: WARN + passthrough inside the gap, then fusing again (with a memory reset) after it.
    in_gap = [(m, lvl) for t, m, lvl in modes if 0.9 < t < 1.5]
    after = [m for t, m, _ in modes if 2.0 < t < 2.4]
    assert ("passthrough", "1") in in_gap and "fusing" in after, modes
    assert node.fused_frames >= 20 and node.stream.fuser.memory_resets >= 1


def test_bad_input_counted_and_skipped(ros_context, spin, frames):
    node, player, rec = _start(ros_context, spin, frames)

    def mutate(kind, idx, msg):
        bad = copy.copy(msg)
        bad.header = copy.deepcopy(msg.header)
        if kind == "rgb" and idx == 3:
            bad.data = array("B", bytes(msg.data)[: len(msg.data) // 2])        # truncated
        elif kind == "rgb" and idx == 5:
            bad.step = msg.step - 7                                              # wrong step
        elif kind == "rgb" and idx == 7:
            bad.encoding = "bayer_grbg8"                                         # unknown encoding
        elif kind == "thermal" and idx == 1:
            bad.encoding = "rgb8"                                                # wrong for a thermal topic
        elif kind == "rgb" and idx == 9:
            bad.header.stamp.sec, bad.header.stamp.nanosec = 0, 0                # zero stamp
        elif kind == "rgb" and idx == 10:
            bad.data = array("B")                                                # empty
        else:
            return msg
        return bad

    player.play(rgb_hz=30.0, thermal_hz=9.0, n_rgb=30, mutate=mutate)
    assert _wait(lambda: sum(v for k, v in node.malformed.items() if k.startswith("rgb_")) >= 4
                 and node.zero_stamps >= 1, 3.0)
    time.sleep(0.4)
    st = rec.last_status()
    assert int(st["malformed_messages"]) >= 5 and int(st["zero_stamp_frames"]) >= 1
    assert st["level"] == "1"                       # WARN
    late = [m for m in rec.images if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
            > player.sent_rgb[12].header.stamp.sec * 10**9 + player.sent_rgb[12].header.stamp.nanosec]
    assert len(late) >= 10 and node.fused_frames >= 10


def test_bad_parameter_fails_fast_naming_it(ros_context, capfd):
    from rclpy.exceptions import ParameterException

    with pytest.raises(ParameterException, match="agc_low_percentile"):      # descriptor range, at declaration
        _node(ros_context, agc_low_percentile=60.0)
    for params, name in (({"homography": [1.0, 0.0]}, "homography"),
                         ({"thermal_range": [5000.0, 1000.0]}, "thermal_range"),
                         ({"backend": "cuda_magic"}, "backend"),
                         ({"model_path": "/nonexistent/model.onnx"}, "model_path")):
        node = _node(ros_context, **params)
        assert node.trigger_configure().name == "FAILURE"
        assert name in capfd.readouterr().err
        node.destroy_node()


def test_live_parameter_update_validated(ros_context):
    node = _node(ros_context)
    assert node.trigger_configure().name == "SUCCESS"
    ok = node.set_parameters([Parameter("approximate_sync_slop_s", value=0.05)])[0]
    assert ok.successful and node.stream.sync.cfg.approximate_sync_slop_s == 0.05
    bad = node.set_parameters([Parameter("thermal_range", value=[5000.0, 1000.0])])[0]
    assert not bad.successful and "thermal_range" in bad.reason
    ro = node.set_parameters([Parameter("backend", value="torch")])[0]
    assert not ro.successful
    node.destroy_node()


def test_unknown_parameter_is_named_with_the_closest_one(ros_context, capfd):
    node = _node(ros_context, approximate_sync_slop=0.05)
    err = capfd.readouterr().err
    assert "unknown parameter 'approximate_sync_slop'" in err and "approximate_sync_slop_s" in err
    node.destroy_node()


def test_output_encoding_that_cannot_encode_a_frame_skips_it_and_counts(ros_context, spin):
    frames = load_frames(frames=8, rgb_size=(161, 120), thermal_size=(80, 64))
    node = _node(ros_context, output_encoding="yuv422")
    assert node.trigger_configure().name == "SUCCESS" and node.trigger_activate().name == "SUCCESS"
    player = PlayerNode(frames, rgb_encoding="rgb8", context=ros_context)
    spin(node)
    assert player.wait_for_subscribers(10.0)
    player.play(rgb_hz=20.0, thermal_hz=10.0, n_rgb=10)
    assert _wait(lambda: node.stream.stats.failures["publish_odd_width"] >= 3, 5.0), node.stream.stats
    assert node.diagnostics_values()["failed_publish_odd_width"] == str(node.stream.stats.failures["publish_odd_width"])
    node.destroy_node()


@pytest.mark.parametrize("auto_align", [False, True])
def test_registration_error_follows_an_injected_thermal_shift(ros_context, spin, shared_dir, auto_align):
    """Real aligned frames with the thermal image shifted 8 px right. Without the automatic shift the live estimate
    reads 8 +- 2 px and warns; with it the node moves the thermal image back by ~8 px, the residual after that is
    small, and the warning says the homography is off."""
    import cv2

    from fusion_ros.tools.player import Frames

    clip = load_frames(pairs=str(shared_dir / "data" / "video" / "dev" / "0111_1753"), frames=10)
    shift = np.float32([[1, 0, 8], [0, 1, 0]])
    shifted = [cv2.warpAffine(t, shift, (t.shape[1], t.shape[0])) for t in clip.thermal]
    frames = Frames(shifted, clip.rgb, clip.fps)
    node = _node(ros_context, registration_check_period_s=0.2, inference_size=[320, 240], auto_align=auto_align)
    assert node.trigger_configure().name == "SUCCESS" and node.trigger_activate().name == "SUCCESS"
    player = PlayerNode(frames, rgb_encoding="bgr8", context=ros_context)
    spin(node)
    assert player.wait_for_subscribers(10.0)
    player.play(rgb_hz=10.0, thermal_hz=10.0, n_rgb=40)
    assert _wait(lambda: node.registration.estimates >= 6, 5.0), node.registration.estimates
    values = node.diagnostics_values()
    value = float(values["registration_error_px"])
    level, message = node._diagnostic_level(values)
    if auto_align:
        dx, dy = (float(v) for v in values["auto_align_shift_px"].split(","))
        print("automatic shift", (dx, dy), "residual after it", value)
        assert abs(dx - 8.0) <= 1.0 and abs(dy) <= 1.0, (dx, dy)
        assert value < 3.0, value
        assert "shifted automatically" in message
    else:
        assert values["auto_align_shift_px"] == "off"
        assert abs(value - 8.0) <= 2.0, value
        assert "misregistered" in message
    node.destroy_node()
