"""Static consistency of docker/ (no Docker engine here): referenced files exist, entrypoint and compose agree."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.jetson"])
def test_dockerfile_references_existing_files(name):
    text = (DOCKER / name).read_text()
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+", text, re.M):
        assert (REPO / src).exists(), f"{name} copies {src}, which does not exist"
    for path in re.findall(r"/ws/src/fusion_ros/(\S+?)[\"\s]", text):
        assert (REPO / path).exists(), f"{name} refers to {path}, which does not exist"
    assert "colcon build --packages-select fusion_ros" in text
    # the pip wheels of rclpy must not shadow the apt ROS install
    assert "ros-jazzy-" in re.search(r"grep -vE '([^']*)'", text).group(1)
    assert (DOCKER / f"{name}.dockerignore").is_file()
    ignored = (DOCKER / f"{name}.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "models" not in ignored


def test_entrypoint_is_executable_and_launches_the_package():
    entry = DOCKER / "entrypoint.sh"
    assert os.access(entry, os.X_OK)
    text = entry.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "prebuild_engine.py" in text and "exec ros2 launch fusion_ros fusion.launch.py" in text


def test_compose_passes_declared_launch_arguments_and_caches_engines():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    svc = compose["services"]["fusion"]
    launch_text = (REPO / "launch" / "fusion.launch.py").read_text()
    for arg in svc["command"]:
        name, sep, value = arg.partition(":=")
        assert sep and f'("{name}",' in launch_text, f"compose passes undeclared launch argument {name}"
    assert any(v.endswith(":/root/.cache/fusion_ros") for v in svc["volumes"])
    params = next(a.partition(":=")[2] for a in svc["command"] if a.startswith("params_file:="))
    mount = next(v for v in svc["volumes"] if v.split(":")[1] in params)
    local = (DOCKER / mount.split(":")[0] / Path(params).relative_to(mount.split(":")[1])).resolve()
    assert local.is_file(), f"compose params file {params} maps to missing {local}"
