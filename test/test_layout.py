"""Stage boundaries: ROS-free stages never import rclpy; the node never imports training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fusion_ros"


def _imports(folder: Path) -> list[tuple[str, str]]:
    found = []
    for py in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Import):
                found += [(str(py), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(py), node.module))
    return found


@pytest.mark.parametrize("stage", ["pipeline", "engine", "model", "io", "train", "export", "eval", "calibrate"])
def test_ros_free_stages_do_not_import_rclpy(stage: str) -> None:
    bad = [(f, m) for f, m in _imports(PKG / stage) if m.split(".")[0] in ("rclpy", "sensor_msgs", "diagnostic_msgs")]
    assert not bad, bad


def test_node_does_not_import_training() -> None:
    bad = [(f, m) for f, m in _imports(PKG / "ros") if m.startswith("fusion_ros.train")]
    assert not bad, bad


def test_ros_holds_only_the_node() -> None:
    """The demo, the player, the benches and ``bag fuse`` live in tools/ and eval/, not beside the node."""
    assert sorted(p.name for p in (PKG / "ros").glob("*.py")) == ["__init__.py", "messages.py", "node.py", "params.py"]
