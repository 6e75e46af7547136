"""``fusion-ros calibrate`` end to end: a bag written here with a known misregistration, outputs, refusals, --help."""

from __future__ import annotations

import json
import shlex

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags", reason="bag input needs the rosbags package")

from fusion_ros.calibrate.benchmark import misregister, render_board  # noqa: E402
from fusion_ros.calibrate.commands import EPILOG  # noqa: E402
from fusion_ros.cli import main  # noqa: E402
from fusion_ros.io.images import read_ir, read_vis  # noqa: E402
from fusion_ros.io.pairs import find_pairs  # noqa: E402
from fusion_ros.pipeline import image_codec as ic  # noqa: E402
from fusion_ros.pipeline.registration_estimate import corner_error  # noqa: E402

RGB_TOPIC, THERMAL_TOPIC = "/camera/image_raw", "/thermal/image_raw"
SIZE = (320, 240)
# The rig of the test bag: thermal misregistered by this homography (thermal resized to RGB -> RGB pixels).
H_RIG = np.array([[1.02, -0.015, 9.0], [0.012, 1.01, -6.0], [0, 0, 1.0]])


def _frames(shared_dir, n=8):
    pairs = find_pairs(shared_dir / "data" / "video" / "dev" / "0111_1753")[:n]
    return [(cv2.resize(read_ir(p.ir_path), SIZE, interpolation=cv2.INTER_AREA),
             cv2.resize(read_vis(p.vi_path), SIZE, interpolation=cv2.INTER_AREA)) for p in pairs]


def write_bag(path, frames, thermal_size=(160, 120)):
    """RGB (bgr8) at 10 Hz and 16-bit thermal (mono16, smaller, 2 ms later) of ``frames`` [(thermal u8, rgb)]."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    Image, Header = store.types["sensor_msgs/msg/Image"], store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]

    def image(t_ns, frame_id, arr, enc):
        e = ic.encode(arr, enc)
        hdr = Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame_id)
        return store.serialize_cdr(Image(header=hdr, height=e.height, width=e.width, encoding=enc, is_bigendian=0,
                                         step=e.step, data=np.frombuffer(e.data, np.uint8)), "sensor_msgs/msg/Image")

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_rgb = w.add_connection(RGB_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        c_th = w.add_connection(THERMAL_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        for i, (th, rgb) in enumerate(frames):
            t = 10**9 + i * 100_000_000
            w.write(c_rgb, t, image(t, "cam", ic.from_rgb(rgb, "bgr8"), "bgr8"))
            counts = (cv2.resize(th, thermal_size, interpolation=cv2.INTER_AREA).astype(np.uint16) * 40 + 20000)
            w.write(c_th, t + 2_000_000, image(t + 2_000_000, "lwir", counts, "mono16"))


@pytest.fixture()
def drive_bag(tmp_path, shared_dir):
    frames = [(misregister(th, H_RIG), rgb) for th, rgb in _frames(shared_dir)]
    write_bag(tmp_path / "drive_bag", frames)
    return tmp_path / "drive_bag"


def test_bag_calibration_recovers_the_rig_and_writes_outputs(drive_bag, tmp_path, capsys):
    out = tmp_path / "calib.yaml"
    argv = ["calibrate", "--bag", str(drive_bag), "--rgb-topic", RGB_TOPIC, "--thermal-topic", THERMAL_TOPIC,
            "--every", "2", "--out", str(out), "--quiet", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    params = yaml.safe_load(out.read_text())
    h = np.array(params["/**"]["ros__parameters"]["homography"]).reshape(3, 3)
    assert corner_error(h, H_RIG, SIZE) < 2.0
    report = json.loads((tmp_path / "calib.report.json").read_text())
    assert report["frames_read"] == 4 and report["frames_used"] >= 3 and report["size"] == list(SIZE)
    assert report["residual_px_before"] > 5 and report["residual_px_after"] < 2.5
    assert summary["homography"] == report["homography"]
    overlay = cv2.imread(str(tmp_path / "calib.overlay.png"))
    assert overlay.shape == (SIZE[1], 2 * SIZE[0] + 4, 3)
    # A second run refuses to overwrite; --force replaces the files.
    assert main(argv) == 1
    assert "exist(s); pass --force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


def test_bad_flags_give_one_clear_line(drive_bag, tmp_path, capsys):
    base = ["calibrate", "--bag", str(drive_bag), "--rgb-topic", RGB_TOPIC, "--out", str(tmp_path / "c.yaml")]
    assert main(base) == 1
    assert "--bag needs --rgb-topic and --thermal-topic" in capsys.readouterr().err
    assert main(base + ["--thermal-topic", "/nope", "--quiet"]) == 1
    assert "topic '/nope' not in the bag" in capsys.readouterr().err
    assert main(base + ["--thermal-topic", THERMAL_TOPIC, "--target", "checkerboard", "--quiet"]) == 1
    assert "--board COLSxROWS" in capsys.readouterr().err
    assert not list(tmp_path.glob("c.*"))


def test_help_examples_run_as_written(tmp_path, shared_dir, monkeypatch):
    """Every example of ``calibrate --help``, in a folder laid out like the repository (../shared beside it)."""
    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared_dir)
    write_bag(work / "drive_bag", [(misregister(th, H_RIG), rgb) for th, rgb in _frames(shared_dir, 4)])
    board_frames = []
    for dx, dy in ((60, 40), (100, 60), (50, 80)):
        pose = np.array([[0.9, 0.05, dx], [-0.04, 0.9, dy], [0, 0, 1.0]])
        rgb = (np.repeat(render_board(SIZE, (7, 5), pose)[..., None], 3, 2) * 255).astype(np.uint8)
        th = (render_board(SIZE, (7, 5), np.linalg.inv(H_RIG) @ pose, invert=True) * 255).astype(np.uint8)
        board_frames.append((th, rgb))
    write_bag(work / "board_bag", board_frames, thermal_size=SIZE)
    monkeypatch.chdir(work)
    text = EPILOG.replace("\\\n", " ")
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("fusion-ros calibrate")]
    assert len(examples) == 4
    for ex in examples:
        assert main(shlex.split(ex)[1:] + ["--quiet"]) == 0, ex
    board = yaml.safe_load((work / "calib_board.yaml").read_text())
    h = np.array(board["/**"]["ros__parameters"]["homography"]).reshape(3, 3)
    assert corner_error(h, H_RIG, SIZE) < 1.0
