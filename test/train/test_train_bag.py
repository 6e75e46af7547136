"""A rosbag2 written here (mcap and sqlite3) round-trips into training pairs with the node's pairing."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags is needed to write and read rosbag2 files")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from fusion_ros.train.bag import extract_pairs  # noqa: E402
from fusion_ros.train.data import find_pairs, load_pair  # noqa: E402

TS = get_typestore(Stores.ROS2_JAZZY)
Image = TS.types["sensor_msgs/msg/Image"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


def _image(stamp: float, img: np.ndarray, encoding: str) -> object:
    sec = int(stamp)
    h, w = img.shape[:2]
    ch = 1 if img.ndim == 2 else img.shape[2]
    return Image(header=Header(stamp=Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9))), frame_id="cam"),
                 height=h, width=w, encoding=encoding, is_bigendian=0, step=w * ch * img.itemsize,
                 data=np.frombuffer(img.tobytes(), np.uint8))


def _write_bag(path, plugin, rgb_stamps, th_stamps):
    items = [(t, "rgb", i) for i, t in enumerate(rgb_stamps)] + [(t, "th", j) for j, t in enumerate(th_stamps)]
    items.sort()
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_rgb = w.add_connection("/rgb/image_raw", Image.__msgtype__, typestore=TS)
        c_th = w.add_connection("/thermal/image_raw", Image.__msgtype__, typestore=TS)
        for t, kind, idx in items:
            if kind == "rgb":
                img = np.zeros((48, 64, 3), np.uint8)
                img[..., 0] = idx            # R carries the RGB frame index
                img[..., 1] = 200
                msg, conn = _image(t, img, "rgb8"), c_rgb
            else:
                msg, conn = _image(t, np.full((24, 32), 10 * idx + 5, np.uint8), "mono8"), c_th
            # Log time a little after the stamp, as a recorder sees it.
            w.write(conn, int((t + 0.003) * 1e9), TS.serialize_cdr(msg, Image.__msgtype__))


@pytest.mark.parametrize("plugin", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
def test_bag_round_trip_pairs_each_rgb_with_nearest_thermal(tmp_path, plugin):
    t0 = 100.0
    rgb = [t0 + i / 30.0 for i in range(30)]                          # 30 Hz for 1 s
    th = [t0 + 0.01 + j / 9.0 for j in range(9) if j not in (5, 6)]   # 9 Hz with a gap (thermal outage)
    bag = tmp_path / "rig"
    _write_bag(bag, plugin, rgb, th)
    out = tmp_path / "pairs"
    slop = 0.05
    n = extract_pairs(bag, "/thermal/image_raw", "/rgb/image_raw", out, slop_s=slop, progress=False)

    expected = []
    for i, t in enumerate(rgb):
        j = min(range(len(th)), key=lambda k: abs(th[k] - t))
        if abs(th[j] - t) <= slop:
            expected.append((i, j))
    assert 0 < n == len(expected) < len(rgb)        # the gap drops RGB frames without a thermal partner
    pairs = find_pairs(out)
    assert len(pairs) == n
    rows = list(csv.DictReader((out / "pairs.csv").open()))
    th_index = {round(t, 6): j for j, t in enumerate(th)}
    for rec, row, (i, j) in zip(pairs, rows, expected):
        ir, vi = load_pair(rec)
        assert ir.shape == vi.shape[:2] == (48, 64)          # thermal registered onto the RGB grid
        assert int(vi[0, 0, 0]) == i and int(vi[0, 0, 1]) == 200
        assert int(ir[0, 0]) == 10 * th_index[round(th[j], 6)] + 5
        assert float(row["rgb_stamp"]) == pytest.approx(rgb[i], abs=1e-6)
        assert float(row["thermal_stamp"]) == pytest.approx(th[j], abs=1e-6)


def test_bag_missing_topic_names_the_topics(tmp_path):
    from fusion_ros.errors import FusionError

    bag = tmp_path / "b"
    _write_bag(bag, StoragePlugin.MCAP, [1.0, 1.1], [1.0])
    with pytest.raises(FusionError, match="/lwir"):
        extract_pairs(bag, "/lwir", "/rgb/image_raw", tmp_path / "o", progress=False)


def test_extracted_pairs_are_what_the_node_fuses_from_the_same_bag(tmp_path):
    """16-bit thermal with a changing scene: the AGC levels of each pair equal the node's (one AGC step per fused
    pair, in the stream's order), so the written IR image is the network's thermal input for that frame."""
    from fusion_ros.pipeline import image_codec as ic
    from fusion_ros.pipeline.fuser import Fuser
    from fusion_ros.pipeline.stream import FusionStream
    from fusion_ros.pipeline.sync import SyncConfig
    from fusion_ros.io.bag import IMAGE_TYPE, read_messages

    rng = np.random.default_rng(0)
    rgb_t = [50.0 + i / 30.0 for i in range(24)]
    th_t = [50.0 + j / 9.0 for j in range(8)]
    items = sorted([(t, "rgb", i) for i, t in enumerate(rgb_t)] + [(t, "th", j) for j, t in enumerate(th_t)])
    bag = tmp_path / "b16"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_rgb = w.add_connection("/rgb/image_raw", Image.__msgtype__, typestore=TS)
        c_th = w.add_connection("/thermal/image_raw", Image.__msgtype__, typestore=TS)
        for t, kind, idx in items:
            if kind == "rgb":
                msg, conn = _image(t, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "rgb8"), c_rgb
            else:
                th = (3000 + 400 * idx + rng.integers(0, 2000, (24, 32))).astype(np.uint16)
                msg, conn = _image(t, th, "mono16"), c_th
            w.write(conn, int((t + 0.003) * 1e9), TS.serialize_cdr(msg, Image.__msgtype__))
    out = tmp_path / "pairs"
    n = extract_pairs(bag, "/thermal/image_raw", "/rgb/image_raw", out, slop_s=0.1, progress=False)

    seen = []

    class Recorder:
        def infer(self, t, v, use_memory=True):
            seen.append(t[0, 0].copy())
            return v

        def reset_memory(self):
            pass

    stream = FusionStream(Fuser(Recorder()), sync_cfg=SyncConfig(approximate_sync_slop_s=0.1, queue_size=100,
                                                                   sync_max_wait_s=10.0))
    for topic, t_ns, msg in read_messages(bag, {"/thermal/image_raw": IMAGE_TYPE, "/rgb/image_raw": IMAGE_TYPE}):
        stamp, t_log = ic.stamp_seconds(msg.header.stamp), t_ns * 1e-9
        jobs = (stream.add_thermal(stamp, ic.thermal_from_message(msg), now=t_log) if topic == "/thermal/image_raw"
                else stream.add_rgb(stamp, ic.rgb_from_message(msg), now=t_log))
        stream.run(jobs)
    stream.run(stream.flush())
    assert n == len(seen) >= 20
    for rec, node_input in zip(find_pairs(out), seen):
        ir, _ = load_pair(rec)
        assert np.abs(ir.astype(int) - np.rint(node_input * 255).astype(int)).max() <= 1
