"""``fusion-ros train`` before any step runs: paths from the working directory, every data path checked, no model replaced
without ``--force``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from fusion_ros.cli import main
from fusion_ros.errors import ConfigError
from fusion_ros.train.config import TrainConfig, check_data_paths, resolve_path

REPO = Path(__file__).resolve().parents[2]
LITE_YAML = str(REPO / "config" / "train" / "lite.yaml")
# A run that trains nothing: it builds the model and exports it (seconds), so the checks around it can be seen.
NO_STEPS = ["--set", "steps=0", "--set", "video_steps=0", "--set", "backbones=[]", "--set", "w_mfm=0", "--no-progress"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fusion-ros train: error: "), err
    return err[0]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_path("runs/try") == tmp_path / "runs" / "try"
    assert resolve_path("/abs/x") == Path("/abs/x")
    assert resolve_path("shared:data/pairs").parts[-2:] == ("data", "pairs")


def test_every_data_path_is_checked_with_its_key(tmp_path) -> None:
    cfg = TrainConfig(pairs=(str(tmp_path / "no_pairs"),), teachers_root=str(tmp_path), teachers=("SeAFusion",),
                      teacher_weights=(1.0,), video=(str(tmp_path / "no_clips"),), init_checkpoint=str(tmp_path / "no.pt"))
    with pytest.raises(ConfigError) as exc:
        check_data_paths(cfg)
    msg = str(exc.value)
    assert "\n" not in msg
    for key in ("pairs: ", "teachers: ", "video: ", "init_checkpoint: "):
        assert key in msg, (key, msg)
    assert "no outputs of teacher 'SeAFusion' for teacher_split 'train'" in msg
    # A stage that does not run needs no data.
    check_data_paths(TrainConfig(steps=0, video_steps=0, pairs=(str(tmp_path / "no_pairs"),), video=(str(tmp_path / "x"),)))


def test_a_missing_video_path_stops_the_run_before_stage_one(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--config", LITE_YAML, "--set", "video=[clips/missing]", "--set", "out_dir=runs/try",
               "--set", "export_path=none", "--no-progress"])
    assert rc == 1
    line = _one_error_line(capsys)
    assert "video: 'clips/missing'" in line and str(tmp_path / "clips" / "missing") in line
    assert not (tmp_path / "runs").exists(), "nothing ran"


def test_a_short_run_never_replaces_the_model_at_export_path(tmp_path, monkeypatch, capsys, shared_dir) -> None:
    """The recipe's data paths are checked before the model at export_path, so this needs the shared data."""
    models = tmp_path / "models"
    models.mkdir()
    for ext in (".onnx", ".json", ".pt"):
        shutil.copy(REPO / "models" / f"fusion_lite{ext}", models / f"fusion_lite{ext}")
    before = _digests(models)
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--config", LITE_YAML, "--set", "steps=3", "--set", "out_dir=runs/try", "--no-progress"])
    assert rc == 1
    line = _one_error_line(capsys)
    assert "export_path: 'models/fusion_lite.onnx' holds a model" in line and "--force" in line
    assert _digests(models) == before
    assert not (tmp_path / "runs").exists()


def test_run_writes_under_the_working_directory_and_a_rerun_needs_resume_or_force(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["train", "--set", "out_dir=runs/try", "--set", "export_path=none", *NO_STEPS]
    assert main(args) == 0
    run = tmp_path / "runs" / "try"
    assert (run / "fusion_lite.onnx").is_file() and (run / "fusion_lite.json").is_file()
    capsys.readouterr()
    assert main(args) == 1
    assert "out_dir: 'runs/try' holds a previous run (fusion_lite.onnx)" in _one_error_line(capsys)
    assert main([*args, "--resume"]) == 0
    assert main([*args, "--force"]) == 0


def test_dataset_from_bag_mistakes_give_one_line(tmp_path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    base = ["dataset", "from-bag", "--thermal-topic", "/t", "--rgb-topic", "/r"]
    cases = [([str(tmp_path / "no_bag"), "--out", str(tmp_path / "o")], "no such file or folder"),
             ([str(tmp_path), "--out", str(a_file)], "is a file"),
             ([str(tmp_path), "--out", str(tmp_path / "pairs")], "is inside the bag")]
    for args, why in cases:
        assert main([*base, *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fusion-ros dataset: error: ") and why in err[0], err
    assert a_file.read_text() == "x" and not (tmp_path / "pairs").exists()
