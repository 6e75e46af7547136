"""The launch files import and build their descriptions where ``launch``/``launch_ros`` are installed.

Skipped without the launch stack (the repository's own ``launch/`` folder would then pass for a ``launch``
namespace package, hence the checks on ``launch.actions`` and ``launch_ros``). Runs with ``make test-ros`` and
``colcon test``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_WHY = "needs launch and launch_ros (a ROS 2 install, or `make test-ros` with ../shared/wheels/ros-jazzy-launch)"
pytest.importorskip("launch.actions", reason=_WHY)
pytest.importorskip("launch_ros.actions", reason=_WHY)

from launch import LaunchContext, LaunchDescription  # noqa: E402
from launch.actions import DeclareLaunchArgument, ExecuteProcess  # noqa: E402
from launch.utilities import perform_substitutions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REQUIRED_ARGS = {"rgb_image_topic", "rgb_info_topic", "thermal_image_topic", "fused_image_topic", "namespace",
                 "params_file", "model_path", "backend", "use_sim_time", "log_level"}


def _context(ld: LaunchDescription, **overrides: str) -> LaunchContext:
    """A context holding every declared argument: its default, or the override."""
    ctx = LaunchContext()
    for a in ld.get_launch_arguments():
        value = overrides.get(a.name)
        if value is None and a.default_value is not None:
            value = "".join(s.perform(ctx) for s in a.default_value)
        if value is not None:
            ctx.launch_configurations[a.name] = value
    return ctx


def _bag_commands(**overrides: str) -> dict[str, list[str]]:
    """The ``ros2 bag`` command lines fusion_bag.launch.py runs, by process name."""
    mod = _load("fusion_bag.launch.py")
    # the source tree's params file: the default one is looked up in an installed fusion_ros
    ctx = _context(mod.generate_launch_description(), params_file=str(REPO / "config" / "fusion.yaml"), **overrides)
    procs = [a for a in mod._launch_setup(ctx) if isinstance(a, ExecuteProcess)]
    return {perform_substitutions(ctx, p.name): [perform_substitutions(ctx, part) for part in p.cmd] for p in procs}


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
    ctx = _context(ld, rgb_image_topic="/cam/image_raw", fused_image_topic="/cam/fused/image_raw",
                   backend="onnxruntime", params_file=str(REPO / "config" / "fusion.yaml"))
    (node,) = mod._launch_setup(ctx)
    assert node.node_package == "fusion_ros" and node.node_executable == "fusion_node"


def test_bag_launch_description_requires_the_bag():
    ld = _load("fusion_bag.launch.py").generate_launch_description()
    args = {a.name: a for a in ld.get_launch_arguments()}
    assert "bag" in args and args["bag"].default_value is None
    assert {"rate", "loop", "record"} <= set(args)


def test_bag_play_passes_delay_only_when_positive():
    # `ros2 bag play --delay 0` is rejected ("less than or equal to zero")
    play = _bag_commands(bag="/data/b", play_delay_s="0")["bag_player"]
    assert "--delay" not in play
    assert play[:4] == ["ros2", "bag", "play", "/data/b"] and "--clock" in play
    play = _bag_commands(bag="/data/b", play_delay_s="2.5")["bag_player"]
    assert play[play.index("--delay") + 1] == "2.5"
    assert "--delay" in _bag_commands(bag="/data/b")["bag_player"]          # the default waits for the node


def test_bag_play_rejects_a_negative_delay_naming_the_argument():
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ValueError, match="play_delay_s must be a number of seconds >= 0"):
            _bag_commands(bag="/data/b", play_delay_s=bad)


def test_bag_record_names_topics_with_the_topics_flag():
    # positional topics of `ros2 bag record` are deprecated in Jazzy
    record = _bag_commands(bag="/data/b", record="/data/out", namespace="ns1",
                           fused_image_topic="fused/image_raw")["bag_recorder"]
    topics = record[record.index("--topics") + 1:]
    assert topics == ["/ns1/fused/image_raw", "/ns1/fused/camera_info", "/diagnostics"]
    assert record[record.index("-o") + 1] == "/data/out"
