"""``fusion-ros fuse`` and ``fusion-ros eval`` end to end on small real subsets of the shared data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import pytest

from fusion_ros.cli import main
from fusion_ros.errors import ConfigError
from fusion_ros.eval import metrics as M
from fusion_ros.io.pairs import find_pairs
from fusion_ros.eval.runner import parse_method

SHARED = Path(os.environ.get("FUSION_ROS_SHARED", Path(__file__).resolve().parents[2] / ".." / "shared"))
DATA = SHARED / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data missing: {path} (set FUSION_ROS_SHARED)")
    return path


def _mini_pairs(tmp: Path, dataset: str, stems: list[str], labels: bool = False) -> Path:
    """A pairs tree <tmp>/pairs/<dataset>/{ir,vi} holding a few real pairs."""
    src = _need(DATA / "pairs" / "dev" / dataset)
    dst = tmp / "pairs" / dataset
    for sub in ("ir", "vi") + (("labels",) if labels else ()):
        (dst / sub).mkdir(parents=True)
        for s in stems:
            for p in (src / sub).glob(f"{s}.*"):
                shutil.copy(p, dst / sub / p.name)
    return tmp / "pairs"


def test_fuse_tno_writes_one_png_per_pair_at_visible_size(tmp_path, capsys):
    tno = _need(DATA / "pairs" / "dev" / "tno")
    assert main(["fuse", "--pairs", str(tno), "--out", str(tmp_path), "--quiet"]) == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 25
    for p in pngs[:5]:
        vi = cv2.imread(str(next((tno / "vi").glob(p.stem + ".*"))))
        assert cv2.imread(str(p)).shape == vi.shape
    assert "wrote 25" in capsys.readouterr().out


def test_fuse_video_clip_one_png_per_frame(tmp_path):
    clip = _need(DATA / "video" / "dev" / "0111_1753")
    n = len(list((clip / "vi").glob("*.png")))
    assert main(["fuse", "--video", str(clip / "ir"), str(clip / "vi"), "--out", str(tmp_path), "--quiet"]) == 0
    assert len(list(tmp_path.glob("*.png"))) == n == 20
    assert cv2.imread(str(tmp_path / "0000.png")).shape == (480, 640, 3)


def test_fuse_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert main(["fuse", "--pairs", str(tmp_path / "nope"), "--out", str(tmp_path), "--quiet"]) == 1


def test_nested_pairs_and_gray_ir():
    pairs = find_pairs(_need(DATA / "pairs" / "dev"))
    assert {p.dataset for p in pairs} >= {"roadscene", "flir", "tno", "msrs"}
    assert len({p.key for p in pairs}) == len(pairs) == 110


def test_parse_method():
    assert parse_method("copy-vis").kind == "copy-vis"
    m = parse_method("mean=teacher-mean:A,B")
    assert (m.name, m.kind, m.members) == ("mean", "teacher-mean", ("A", "B"))
    assert parse_method("lite").kind == "student"
    with pytest.raises(ConfigError, match="not a folder"):
        parse_method("x=/does/not/exist")


def test_eval_json_has_every_metric_for_every_method(tmp_path, capsys):
    root = _mini_pairs(tmp_path, "tno", ["01", "02"])
    teachers = _need(DATA / "teachers")
    methods = [f"SeAFusion={teachers / 'SeAFusion' / 'dev'}", f"IFCNN={teachers / 'IFCNN' / 'dev'}", "teacher-mean",
               "lite"]
    rc = main(["eval", "--pairs", str(root), "--methods", *methods, "--json", "--jobs", "1", "--no-speed",
               "--quiet", "--report", str(tmp_path / "rep")])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    names = {"SeAFusion", "IFCNN", "teacher-mean", "student-lite", "copy-vis", "copy-ir"}
    assert set(res["overall"]) == names
    for name in names:
        row = res["overall"][name]
        assert row["n"] == 2
        assert all(isinstance(row[k], float) for k in M.METRICS), (name, row)
    # A copied source keeps its own information: VIF ~1 from itself, above any fuser's total.
    assert res["overall"]["copy-vis"]["VIF"] > max(res["overall"][n]["VIF"] for n in ("SeAFusion", "IFCNN"))
    rep = tmp_path / "rep"
    for f in ("report.md", "per_image.csv", "grid.png", "results.json"):
        assert (rep / f).is_file(), f
    assert "**" in (rep / "report.md").read_text()
    assert len((rep / "per_image.csv").read_text().splitlines()) == 1 + 2 * len(names)


def test_eval_video_and_detect(tmp_path, capsys):
    clip_src = _need(DATA / "video" / "dev" / "0114_1551")
    clip = tmp_path / "video" / "c1"
    for sub in ("ir", "vi"):
        (clip / sub).mkdir(parents=True)
        for i in range(4):
            shutil.copy(clip_src / sub / f"{i:04d}.png", clip / sub / f"{i:04d}.png")
    root = _mini_pairs(tmp_path, "msrs", ["00537D"], labels=True)
    rc = main(["eval", "--pairs", str(root), "--video", str(tmp_path / "video"), "--methods", "lite", "--detect",
               "--no-metrics", "--json", "--quiet", "--report", str(tmp_path / "rep")])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    mean = res["video"]["mean"]
    assert mean["visible"]["flicker"] == pytest.approx(1.0)
    assert {"student-lite (memory)", "student-lite (no memory)", "copy-ir"} <= set(mean)
    for row in mean.values():
        assert all(0.0 < row[q] < 1.5 for q in ("Qabf", "SSIM", "VIF")), row
    # A copied source keeps its own information (VIF ~1 from itself), above a fuser's total.
    assert mean["visible"]["VIF"] > mean["student-lite (no memory)"]["VIF"]
    # Texture per frame: the thermal copy of this clip (flat leaf-covered ground) has far less than the visible.
    assert 0.0 < mean["copy-ir"]["SF"] < mean["visible"]["SF"] and 0.0 < mean["copy-ir"]["AG"] < mean["visible"]["AG"]
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| warp_x1000 | Qabf | SSIM | VIF | SF | AG |" in report and "SF per clip:" in report
    det = res["detection"]["rows"]
    assert {"visible", "student-lite", "copy-ir"} <= set(det)
    assert 0.0 <= det["visible"]["mAP"] <= 1.0
    assert (tmp_path / "rep" / "flicker.png").is_file()


def test_report_bold_and_strict_json():
    from fusion_ros.eval.report import markdown_tables, to_json

    res = {"metrics": ["EN", "VIF"], "baselines": ["copy-vis"], "n_common": 2, "n_pairs": 2, "pairs_root": "x",
           "overall": {"a": {"n": 2, "EN": 7.0, "VIF": 0.5}, "b": {"n": 2, "EN": 6.0, "VIF": 0.6},
                       "copy-vis": {"n": 2, "EN": 9.0, "VIF": 1.0}},
           "per_dataset": {"d": {"a": {"n": 2, "EN": 7.0, "VIF": float("nan")}}}, "speed_ms": {}}
    md = markdown_tables(res)
    assert "| a | 2 | **7.000** | 0.500 |" in md
    assert "| b | 2 | 6.000 | **0.600** |" in md
    assert "| copy-vis (baseline) | 2 | 9.000 | 1.000 |" in md  # a baseline is never bold
    text = json.dumps(to_json(res), allow_nan=False)
    assert json.loads(text)["per_dataset"]["d"]["a"]["VIF"] is None


def test_worker_pool_gives_the_same_numbers(tmp_path):
    from fusion_ros.eval.runner import EvalConfig, evaluate_pairs, parse_method, prepare_methods

    root = _mini_pairs(tmp_path, "tno", ["03", "04"])
    cfg1 = EvalConfig(jobs=1, speed=False, grid_images=0)
    methods = prepare_methods([parse_method("copy-vis")], cfg1)
    one = evaluate_pairs(root, methods, cfg1, progress=False)
    two = evaluate_pairs(root, methods, EvalConfig(jobs=2, speed=False, grid_images=0), progress=False)
    assert two["jobs"] == 2
    assert one["overall"] == two["overall"]
