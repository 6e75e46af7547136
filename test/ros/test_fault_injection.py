"""Everything a camera driver or a bag can send, to the node in another process over DDS: it stays up, counts
each kind of bad input in /diagnostics and fuses again after resolution changes and stamp jumps."""

from __future__ import annotations

import copy
import time
from array import array

import numpy as np
import pytest

from fusion_ros.pipeline import image_codec as ic
from fusion_ros.tools.player import PlayerNode, image_msg, load_frames

pytestmark = pytest.mark.ros

NODE_ARGS = ["-p", "inference_size:=[160,120]", "-p", "threads:=1", "-p", "backend:=onnxruntime",
             "-p", "diagnostics_period_s:=0.2", "-p", "thermal_timeout_s:=0.5", "-p", "stamp_jump_s:=1.0"]


class Camera:
    """Publishes paired frames on a stamp clock of its own (so that stamps can jump) through a player."""

    def __init__(self, player: PlayerNode) -> None:
        self.player = player
        self.offset_s = 0.0

    def stamp(self, msg, t: float) -> None:
        sec, frac = divmod(t + self.offset_s, 1.0)
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(sec), int(frac * 1e9)

    def play(self, seconds: float, rgb_msgs=None, th_msgs=None, hz: float = 20.0, bad=()) -> None:
        """``seconds`` of pairs at ``hz`` (thermal every other frame), one ``bad`` message after each pair."""
        rgb_msgs = rgb_msgs or self.player.rgb_msgs
        th_msgs = th_msgs or self.player.thermal_msgs
        bad = list(bad)
        for i in range(int(seconds * hz)):
            t = time.time()
            if i % 2 == 0:
                th = th_msgs[i % len(th_msgs)]
                self.stamp(th, t)
                self.player.pub_thermal.publish(th)
            rgb = rgb_msgs[i % len(rgb_msgs)]
            self.stamp(rgb, t)
            self.player.info.header = rgb.header
            self.player.pub_info.publish(self.player.info)
            self.player.pub_rgb.publish(rgb)
            if bad:
                topic, msg = bad.pop(0)
                self.stamp(msg, t) if msg.header.stamp.sec or msg.header.frame_id != "zero" else None
                (self.player.pub_rgb if topic == "rgb" else self.player.pub_thermal).publish(msg)
            time.sleep(1.0 / hz)


def _bad_messages(good_rgb, good_th):
    def variant(msg, **fields):
        m = copy.copy(msg)
        m.header = copy.deepcopy(msg.header)
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    odd = image_msg(np.full((120, 161, 2), 128, np.uint8), "yuv422", "rgb_camera")   # 4:2:2 with an odd width
    zero = variant(good_rgb)
    zero.header.stamp.sec, zero.header.stamp.nanosec, zero.header.frame_id = 0, 0, "zero"
    return {
        "rgb_odd_width": ("rgb", odd),
        "rgb_short_data": ("rgb", variant(good_rgb, data=array("B", bytes(good_rgb.data)[:1000]))),
        "rgb_small_step": ("rgb", variant(good_rgb, step=good_rgb.width * 3 - 7)),
        "rgb_unknown_encoding": ("rgb", variant(good_rgb, encoding="bayer_grbg8")),
        "rgb_wrong_encoding": ("rgb", variant(good_rgb, encoding="mono16")),
        "rgb_zero_size": ("rgb", variant(good_rgb, width=0, step=0)),
        "thermal_wrong_encoding": ("thermal", image_msg(np.zeros((good_th.height, good_th.width, 3), np.uint8), "rgb8",
                                                        "thermal_camera")),
        "thermal_empty_data": ("thermal", variant(good_th, data=array("B"))),
        "zero_stamp": ("rgb", zero),
    }


def test_node_survives_every_malformed_kind_and_fuses_after_jumps(node_up):
    frames = load_frames(frames=8, rgb_size=(320, 240), thermal_size=(160, 128))
    proc, log, player, rec = node_up(NODE_ARGS, frames, timeout=40.0)
    time.sleep(0.3)
    cam = Camera(player)
    bad = _bad_messages(player.rgb_msgs[0], player.thermal_msgs[0])

    def status():
        time.sleep(0.5)
        return rec.last_status()

    cam.play(0.8)                                           # good pairs
    cam.play(1.0, bad=list(bad.values()))                   # every malformed kind between good pairs
    big = load_frames(frames=4, rgb_size=(480, 360), thermal_size=(240, 192))
    cam.play(0.6, rgb_msgs=[image_msg(ic.from_rgb(r, "bgr8"), "bgr8", "rgb_camera") for r in big.rgb],
             th_msgs=[image_msg(t, "mono16", "thermal_camera") for t in big.thermal])   # resolution change
    cam.play(0.6)                                           # and back
    st = status()
    fused_before_jumps = int(st["fused_frames"])
    cam.offset_s = -10.0                                    # a looped bag: stamps back 10 s
    cam.play(0.8)
    st = status()
    fused_after_back = int(st["fused_frames"])
    cam.offset_s = 60.0                                     # a paused recording: stamps forward 60 s
    cam.play(0.8)
    st = status()

    log.seek(0)
    assert proc.poll() is None, f"node died:\n{log.read()[-3000:]}"
    for kind in bad:
        key = "zero_stamp_frames" if kind == "zero_stamp" else f"malformed_{kind}"
        assert int(st.get(key, 0)) >= 1, (kind, st)
    assert int(st["rgb_resolution_changes"]) >= 2 and int(st["thermal_resolution_changes"]) >= 2, st
    assert int(st["stamp_jumps"]) >= 2, st
    # Fusion resumed after each jump (a few frames are passed through while only one camera has jumped).
    assert fused_after_back > fused_before_jumps + 5, st
    assert int(st["fused_frames"]) > fused_after_back + 5 and st["mode"] == "fusing", st
    assert st["level"] == "1" and int(st["malformed_messages"]) >= len(bad) - 1
    text = log.read()
    assert "Traceback" not in text, text[-3000:]
    # One throttled warning line per kind, not only the first kind.
    for kind in ("odd_width", "short_data", "small_step", "unknown_encoding"):
        assert f"({kind}," in text, kind
