"""``fusion-ros demo`` on real data sources: an image-pair folder, a video pair and a rosbag2 (no mocks)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

SHARED = Path(os.environ.get("FUSION_ROS_SHARED", Path(__file__).resolve().parents[2] / ".." / "shared"))
PAIRS = SHARED / "data" / "pairs" / "dev" / "msrs"
CLIP = SHARED / "data" / "video" / "train" / "0113_1714"
PARAMS = {"inference_size": [160, 120], "threads": 1, "backend": "onnxruntime"}


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"shared data missing: {path} (set FUSION_ROS_SHARED)")


def _rows(video: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(thermal, RGB, fused) panels as float grey images per frame of the demo's fused.mp4."""
    cap = cv2.VideoCapture(str(video))
    rows = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32)
        w = g.shape[1] // 3
        rows.append((g[:, :w], g[:, w:2 * w], g[:, 2 * w:]))
    return rows


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_demo_pairs_fuses_each_rgb_image_with_its_own_thermal_image(tmp_path):
    _need(PAIRS)
    from fusion_ros.tools.demo import run_demo

    n = len(list((PAIRS / "vi").iterdir()))
    # The CLI defaults (15 Hz RGB, 9 Hz thermal): the thermal camera ticks at other instants than the RGB one.
    summary = run_demo(out=tmp_path, pairs=str(PAIRS), frames=n, rgb_hz=15.0, thermal_hz=9.0, params=PARAMS)
    assert summary["source"] == "pairs" and summary["fused_frames_received"] == n
    rows = _rows(tmp_path / "fused.mp4")
    assert len(rows) == n
    # Unrelated scenes: what fusion added to each RGB image must look like its own thermal image more than any
    # other one (pairing a still with a neighbour's thermal image ghosts the wrong scene into it). The addition,
    # not the fused image: on a dim thermal frame the fused image is mostly the RGB one.
    for i, (_, rgb, fused) in enumerate(rows):
        own = _corr(fused - rgb, rows[i][0])
        others = [_corr(fused - rgb, rows[j][0]) for j in range(n) if j != i]
        assert own > max(others), (i, own, others)


def test_demo_video_frames_limit(tmp_path):
    _need(CLIP)
    from fusion_ros.tools.demo import run_demo

    summary = run_demo(out=tmp_path, video=[str(CLIP / "ir.mp4"), str(CLIP / "vi.mp4")], frames=6, rgb_hz=10.0,
                       thermal_hz=7.0, params=PARAMS)
    assert summary["source"] == "video"
    assert summary["rgb_frames_sent"] == 6 and summary["fused_frames_received"] >= 5
    assert len(_rows(tmp_path / "fused.mp4")) == summary["fused_frames_received"]


def test_demo_bag_from_a_written_mcap(tmp_path):
    _need(CLIP)
    pytest.importorskip("rosbags", reason="the --bag source needs the rosbags package")
    from rosbags.rosbag2 import StoragePlugin, Writer

    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.io.bag import typestore
    from fusion_ros.tools.demo import run_demo

    store = typestore()
    Image, Header, Time = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                     "builtin_interfaces/msg/Time"))
    caps = [cv2.VideoCapture(str(CLIP / n)) for n in ("ir.mp4", "vi.mp4")]
    bag = tmp_path / "bag"

    def img(arr, enc, stamp_ns, frame_id):
        e = ic.encode(arr, enc)
        hdr = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)
        return store.serialize_cdr(Image(header=hdr, height=e.height, width=e.width, encoding=enc, is_bigendian=0,
                                         step=e.step, data=np.frombuffer(e.data, np.uint8)), "sensor_msgs/msg/Image")

    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_rgb = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        c_th = w.add_connection("/thermal/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i in range(9):
            (_, th), (_, vi) = (c.read() for c in caps)
            t_ns = 1_000_000_000 + i * 33_333_333
            w.write(c_rgb, t_ns, img(vi, "bgr8", t_ns, "rgb"))
            if i % 3 == 0:      # a 10 Hz thermal camera, 5 ms after the RGB one
                w.write(c_th, t_ns + 5_000_000, img(cv2.cvtColor(th, cv2.COLOR_BGR2GRAY), "mono8", t_ns + 5_000_000,
                                                    "thermal"))
    summary = run_demo(out=tmp_path / "out", bag=str(bag), frames=6, rgb_hz=10.0, thermal_hz=7.0, params=PARAMS)
    assert summary["source"] == "bag"
    assert summary["rgb_frames_sent"] == 6 and summary["fused_frames_received"] >= 5


def test_player_sends_every_frame_once(ros_context):
    from fusion_ros.tools.player import Frames, PlayerNode, load_frames

    # At 49 Hz, i / 49 * 49 falls just below i for i = 1, 2, 4: a plain int() repeated frames and skipped others.
    src = load_frames(frames=8, rgb_size=(64, 48), thermal_size=(32, 24))
    player = PlayerNode(Frames(src.thermal, src.rgb, 49.0), context=ros_context)
    player.play(rgb_hz=49.0, thermal_hz=5.0, n_rgb=8)
    assert player.sent_frame == list(range(8))
    player.destroy_node()
