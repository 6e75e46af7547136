"""Shared fixtures: repository paths and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUSION_ROS_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set FUSION_ROS_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    """An exported student of another architecture than the shipped lite (untrained `default`): its .onnx, with
    its sidecar and weights beside it, for the checks that refuse one model's files next to another's."""
    from fusion_ros.export.onnx_export import export_onnx
    from fusion_ros.model import create_model

    return export_onnx(create_model("default"), tmp_path_factory.mktemp("other_model") / "other.onnx")
