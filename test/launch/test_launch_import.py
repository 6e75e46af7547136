"""The launch files import and build their descriptions where ``launch``/``launch_ros`` are installed.

Skipped here (no ROS 2 install; the repository's own ``launch/`` folder would even shadow the ``launch`` package
as a namespace package, hence the checks on ``launch.actions`` and ``launch_ros``). Runs with ``colcon test``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_WHY = "needs a ROS 2 install with launch and launch_ros (run `colcon test` in the docker image)"
pytest.importorskip("launch.actions", reason=_WHY)
pytest.importorskip("launch_ros.actions", reason=_WHY)

from launch import LaunchContext, LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REQUIRED_ARGS = {"rgb_image_topic", "rgb_info_topic", "thermal_image_topic", "fused_image_topic", "namespace",
                 "params_file", "model_path", "backend", "use_sim_time", "log_level"}


def _load(name: str):
    path = REPO / "launch" / name
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fusion_launch_description_declares_every_argument():
    ld = _load("fusion.launch.py").generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    args = {a.name: a for a in ld.get_launch_arguments()}
    assert REQUIRED_ARGS <= set(args), REQUIRED_ARGS - set(args)
    for a in args.values():
        assert isinstance(a, DeclareLaunchArgument) and a.description and "no description" not in a.description


def test_fusion_launch_setup_builds_the_remapped_node():
    mod = _load("fusion.launch.py")
    ld = mod.generate_launch_description()
    ctx = LaunchContext()
    overrides = {"rgb_image_topic": "/cam/image_raw", "fused_image_topic": "/cam/fused/image_raw",
                 "backend": "onnxruntime", "params_file": str(REPO / "config" / "fusion.yaml")}
    for a in ld.get_launch_arguments():
        value = overrides.get(a.name)
        ctx.launch_configurations[a.name] = value if value is not None else \
            "".join(s.perform(ctx) for s in a.default_value)
    (node,) = mod._launch_setup(ctx)
    assert node.node_package == "fusion_ros" and node.node_executable == "fusion_node"


def test_bag_launch_description_requires_the_bag():
    ld = _load("fusion_bag.launch.py").generate_launch_description()
    args = {a.name: a for a in ld.get_launch_arguments()}
    assert "bag" in args and args["bag"].default_value is None
    assert {"rate", "loop", "record"} <= set(args)
