"""``bag fuse`` on a bag written here (mcap and sqlite3), through the node's pipeline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="bag fuse needs the rosbags package")

from fusion_ros.pipeline import image_codec as ic  # noqa: E402
from fusion_ros.eval.bag_fuse import fuse_bag  # noqa: E402
from fusion_ros.tools.scene import NightScene, SceneConfig  # noqa: E402


def _write_bag(path, storage):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    Image, Info = store.types["sensor_msgs/msg/Image"], store.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    scene = NightScene(SceneConfig(frames=12, rgb_size=(160, 120), thermal_size=(80, 64)))
    stamps = []
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_rgb = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        c_info = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        c_th = w.add_connection("/thermal/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i, (th, rgb, t) in enumerate(scene):
            t_ns = 1_000_000_000 + int(t * 1e9)
            hdr = Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="cam")
            stamps.append(t_ns)
            info = Info(header=hdr, height=120, width=160, distortion_model="plumb_bob", d=np.zeros(5),
                        k=np.eye(3).ravel(), r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
                        roi=store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                             do_rectify=False))
            w.write(c_info, t_ns, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            enc = ic.encode(ic.from_rgb(rgb, "bgr8"), "bgr8")
            w.write(c_rgb, t_ns, store.serialize_cdr(Image(header=hdr, height=120, width=160, encoding="bgr8",
                                                           is_bigendian=0, step=enc.step,
                                                           data=np.frombuffer(enc.data, np.uint8)),
                                                     "sensor_msgs/msg/Image"))
            if i % 2 == 0:     # thermal at half the rate
                te = ic.encode(th, "mono16")
                w.write(c_th, t_ns + 1000, store.serialize_cdr(
                    Image(header=Header(stamp=hdr.stamp, frame_id="lwir"), height=64, width=80, encoding="mono16",
                          is_bigendian=0, step=te.step, data=np.frombuffer(te.data, np.uint8)),
                    "sensor_msgs/msg/Image"))
    return stamps


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_fuse_writes_fused_with_rgb_headers(tmp_path, storage):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    stamps = _write_bag(tmp_path / "in", storage)
    counts = fuse_bag(tmp_path / "in", tmp_path / "out", rgb_topic="/camera/image_raw",
                      thermal_topic="/thermal/image_raw", overrides={"backend": "onnxruntime", "threads": 1},
                      storage=storage)
    assert counts["rgb"] == 12 and counts["written"] == 12 and counts["fused"] == 12
    store = get_typestore(Stores.ROS2_JAZZY)
    with Reader(tmp_path / "out") as r:
        topics = {c.topic for c in r.connections}
        assert topics == {"/fused/image_raw", "/fused/camera_info"}
        imgs, infos = [], []
        for conn, t, raw in r.messages():
            m = store.deserialize_cdr(raw, conn.msgtype)
            (imgs if conn.topic == "/fused/image_raw" else infos).append(m)
    got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in imgs]
    assert got == stamps
    assert all(m.header.frame_id == "cam" and m.encoding == "bgr8" and (m.width, m.height) == (160, 120) for m in imgs)
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in infos] == stamps
    from fusion_ros.tools.player import read_bag_frames

    frames = read_bag_frames(tmp_path / "in", "/camera/image_raw", "/thermal/image_raw")
    assert len(frames) == 12 and frames.thermal[0].dtype == np.uint16


def test_bag_fuse_unknown_topic(tmp_path):
    from fusion_ros.errors import ConfigError

    _write_bag(tmp_path / "in", "mcap")
    with pytest.raises(ConfigError, match="'/nope' not in the bag"):
        fuse_bag(tmp_path / "in", tmp_path / "out", rgb_topic="/nope", thermal_topic="/thermal/image_raw")


def _tree_hashes(root):
    import hashlib

    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_bag_fuse_keeps_fusing_a_looped_recording(tmp_path):
    """A bag replayed twice in a row (stamps jump back): every frame of both passes is fused."""
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    _write_bag(tmp_path / "one", "mcap")
    with Reader(tmp_path / "one") as r, Writer(tmp_path / "loop", version=9) as w:
        conns = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=store) for c in r.connections}
        msgs = list(r.messages())
        span = msgs[-1][1] - msgs[0][1] + 100_000_000
        for rep in range(2):
            for conn, t, raw in msgs:
                w.write(conns[conn.topic], t + rep * span, raw)     # the header stamps repeat: a looped replay
    # The recording is 0.4 s long: a jump threshold below that sees the loop as the jump it is.
    counts = fuse_bag(tmp_path / "loop", tmp_path / "out", rgb_topic="/camera/image_raw",
                      thermal_topic="/thermal/image_raw", overrides={"threads": 1, "stamp_jump_s": 0.2})
    assert counts["rgb"] == 24 and counts["fused"] == 24 and counts["stamp_jumps"] >= 1, counts


def test_bag_fuse_interrupted_leaves_nothing_and_reruns(tmp_path, monkeypatch):
    import fusion_ros.eval.bag_fuse as bag

    _write_bag(tmp_path / "in", "mcap")
    before = _tree_hashes(tmp_path / "in")
    calls = {"n": 0}
    real = bag._fused_msg

    def interrupt_at_the_fifth(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(bag, "_fused_msg", interrupt_at_the_fifth)
    kw = dict(rgb_topic="/camera/image_raw", thermal_topic="/thermal/image_raw", overrides={"threads": 1})
    with pytest.raises(KeyboardInterrupt):
        fuse_bag(tmp_path / "in", tmp_path / "out", **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]          # no half bag, no partial folder
    assert _tree_hashes(tmp_path / "in") == before
    monkeypatch.setattr(bag, "_fused_msg", real)
    assert fuse_bag(tmp_path / "in", tmp_path / "out", **kw)["written"] == 12


def test_bag_fuse_ordinary_mistakes_are_one_clear_error(tmp_path):
    from fusion_ros.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        fuse_bag(tmp_path / "missing", tmp_path / "out", rgb_topic="/a", thermal_topic="/b")
    _write_bag(tmp_path / "in", "mcap")
    with pytest.raises(ConfigError, match="approximate_sync_slop_s"):
        fuse_bag(tmp_path / "in", tmp_path / "out", rgb_topic="/a", thermal_topic="/b",
                 overrides={"approximate_sync_slop": 0.1})
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="exists"):
        fuse_bag(tmp_path / "in", tmp_path / "taken", rgb_topic="/camera/image_raw", thermal_topic="/thermal/image_raw")
