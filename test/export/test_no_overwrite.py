"""No command writes over its inputs or an existing model without ``--force``: the files are byte-identical afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from fusion_ros.cli import main
from fusion_ros.model.artifact import open_artifact

pytestmark = pytest.mark.onnx

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FUSION_ROS_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data missing: {path} (set FUSION_ROS_SHARED)")
    return path


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _copy_shipped(dst: Path, name: str = "lite") -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for ext in (".onnx", ".json", ".pt"):
        shutil.copy(REPO / "models" / f"fusion_{name}{ext}", dst / f"fusion_{name}{ext}")
    return dst / f"fusion_{name}.onnx"


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fusion-ros {command}: error: "), err
    return err[0]


def test_refused_fuse_and_export_leave_the_inputs_byte_identical(tmp_path, capsys) -> None:
    src = _need(SHARED / "data" / "pairs" / "dev" / "tno")
    pairs = tmp_path / "pairs"
    for sub in ("ir", "vi"):
        (pairs / sub).mkdir(parents=True)
        for p in sorted((src / sub).iterdir())[:3]:
            shutil.copy(p, pairs / sub / p.name)
    model = _copy_shipped(tmp_path / "models")
    before = _digests(tmp_path)

    assert main(["fuse", "--pairs", str(pairs), "--out", str(pairs / "vi"), "--quiet"]) == 1
    assert "inside the input --pairs" in _one_error_line(capsys, "fuse")
    assert main(["fuse", "--pairs", str(pairs), "--out", str(pairs), "--quiet"]) == 1
    _one_error_line(capsys, "fuse")
    assert main(["export", "--out", str(model)]) == 1                        # untrained over a trained model
    assert "without --checkpoint writes untrained weights" in _one_error_line(capsys, "export")
    assert main(["export", "--checkpoint", str(model.with_suffix(".pt")), "--out", str(model)]) == 1
    assert "pass --force" in _one_error_line(capsys, "export")

    assert _digests(tmp_path) == before


def test_fuse_video_into_its_own_frame_folder_is_refused(tmp_path, capsys) -> None:
    src = _need(SHARED / "data" / "video" / "dev" / "0111_1753")
    clip = tmp_path / "clip"
    for sub in ("ir", "vi"):
        (clip / sub).mkdir(parents=True)
        for p in sorted((src / sub).iterdir())[:2]:
            shutil.copy(p, clip / sub / p.name)
    before = _digests(tmp_path)
    assert main(["fuse", "--video", str(clip / "ir"), str(clip / "vi"), "--out", str(clip / "vi"), "--quiet"]) == 1
    assert "inside the input --video VI" in _one_error_line(capsys, "fuse")
    assert _digests(tmp_path) == before
    assert main(["fuse", "--video", str(clip / "ir"), str(clip / "vi"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.stem + ".png" for p in sorted((clip / "vi").iterdir())]


def test_ordinary_mistakes_give_one_line(tmp_path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["fuse", "--pairs", str(tmp_path), "--out", str(a_file), "--quiet"]) == 1
    assert "--out" in _one_error_line(capsys, "fuse") and a_file.read_text() == "x"
    assert main(["export", "--out", str(tmp_path)]) == 1
    assert "is a folder" in _one_error_line(capsys, "export")
    assert main(["export", "--out", str(a_file / "m.onnx")]) == 1
    _one_error_line(capsys, "export")
    assert main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "nope.pt' not found" in _one_error_line(capsys, "export")
    assert main(["fuse", "--video", str(tmp_path / "ir"), str(tmp_path / "vi"), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "no such file or folder" in _one_error_line(capsys, "fuse")
    assert main(["build-engine", "--onnx", str(tmp_path / "nope.onnx")]) == 1
    assert "model_path" in _one_error_line(capsys, "build-engine")


def test_export_with_force_replaces_the_model_consistently(tmp_path, capsys) -> None:
    model = _copy_shipped(tmp_path)
    assert main(["export", "--checkpoint", str(model.with_suffix(".pt")), "--out", str(model), "--force"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity_max_abs_diff"]["fused"] <= 1e-4
    art = open_artifact(model)                                                 # sidecar, graph and weights agree
    assert art.sidecar["meta"]["source"] == str(model.with_suffix(".pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fusion_lite.json", "fusion_lite.onnx", "fusion_lite.pt"]


def test_export_resolves_out_against_the_working_directory(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--out", "models/fusion_lite.onnx"]) == 0
    assert json.loads(capsys.readouterr().out)["onnx"] == "models/fusion_lite.onnx"
    assert open_artifact(tmp_path / "models" / "fusion_lite.onnx").sidecar["meta"]["source"] == "untrained lite"
