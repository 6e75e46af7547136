"""Replay a recorded rosbag2 through the fusion node (field replay), optionally recording the fused topics.

``ros2 bag play`` publishes the three input topics with ``--clock`` and the node runs on sim time, so the fused
frames carry the bag's stamps. Playback starts after ``play_delay_s`` so the node has configured (loaded or built its
engine) before the first frame; the launch shuts down when the bag ends (unless ``loop:=true``), which also closes
the output bag. Every argument of ``fusion.launch.py`` (topics, namespace, params_file, model_path, backend,
log_level) passes through unchanged; use the bag's topic names for the inputs.

Examples::

    ros2 launch fusion_ros fusion_bag.launch.py bag:=/data/night_drive \\
        rgb_image_topic:=/camera/color/image_raw rgb_info_topic:=/camera/color/camera_info \\
        thermal_image_topic:=/boson/image_raw
    ros2 launch fusion_ros fusion_bag.launch.py bag:=/data/night_drive record:=/data/night_drive_fused rate:=0.5 \\
        rgb_image_topic:=/camera/color/image_raw rgb_info_topic:=/camera/color/camera_info \\
        thermal_image_topic:=/boson/image_raw

Offline, without ROS running, ``fusion-ros bag fuse IN OUT`` does the same with the same pipeline.
"""

from __future__ import annotations

import math
import os

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction,
                            RegisterEventHandler)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

ARGUMENTS = [
    # (name, default (None = required), description, choices)
    ("bag", None, "rosbag2 to replay (directory or .mcap/.db3 file)", None),
    ("rate", "1.0", "playback rate factor (ros2 bag play --rate); < 1 when the engine cannot keep up", None),
    ("loop", "false", "replay the bag in a loop (the launch then runs until Ctrl-C)", ["true", "false"]),
    ("play_delay_s", "5.0",
     "seconds to wait before playback so the node has configured (a first TensorRT build can take minutes: "
     "build it beforehand with fusion-ros build-engine, or raise this); 0 = start at once", None),
    ("record", "", "output bag for the fused image, fused camera_info and /diagnostics; empty = do not record", None),
    ("record_storage", "mcap", "storage plugin of the output bag", ["mcap", "sqlite3"]),
]


def _resolve(namespace: str, topic: str) -> str:
    # ros2 bag takes absolute names; relative node topics resolve inside the node's namespace.
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(p for p in (namespace.strip("/"), topic) if p)


def _sibling_info_topic(image_topic: str) -> str:
    head, sep, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}{sep}camera_info"


def _play_delay_s(text: str) -> float:
    """``play_delay_s`` as seconds >= 0 (``ros2 bag play --delay`` takes only positive values, so 0 omits it)."""
    try:
        delay = float(text)
    except ValueError:
        delay = math.nan
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(f"play_delay_s must be a number of seconds >= 0 (0 = no delay), got '{text}'")
    return delay


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    ns = LaunchConfiguration("namespace", default="").perform(context)
    rgb_image = _resolve(ns, LaunchConfiguration("rgb_image_topic", default="rgb/image_raw").perform(context))
    rgb_info = _resolve(ns, LaunchConfiguration("rgb_info_topic", default="rgb/camera_info").perform(context))
    thermal = _resolve(ns, LaunchConfiguration("thermal_image_topic", default="thermal/image_raw").perform(context))
    fused = _resolve(ns, LaunchConfiguration("fused_image_topic", default="fused/image_raw").perform(context))

    play_cmd = ["ros2", "bag", "play", arg("bag"), "--clock", "--rate", arg("rate"),
                "--topics", rgb_image, rgb_info, thermal]
    delay = _play_delay_s(arg("play_delay_s"))
    if delay > 0:
        play_cmd += ["--delay", f"{delay:g}"]
    if arg("loop") == "true":
        play_cmd.append("--loop")
    player = ExecuteProcess(cmd=play_cmd, name="bag_player", output="screen")
    actions = [player]
    if arg("loop") != "true":
        actions.append(RegisterEventHandler(OnProcessExit(
            target_action=player, on_exit=[EmitEvent(event=Shutdown(reason="bag replay finished"))])))
    if arg("record"):
        actions.append(ExecuteProcess(
            cmd=["ros2", "bag", "record", "--use-sim-time", "-s", arg("record_storage"), "-o", arg("record"),
                 "--topics", fused, _sibling_info_topic(fused), "/diagnostics"],
            name="bag_recorder", output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the replay arguments; the node's own arguments come from fusion.launch.py."""
    actions = []
    for name, default, description, choices in ARGUMENTS:
        kwargs = {"description": description, "choices": choices}
        if default is not None:
            kwargs["default_value"] = default
        actions.append(DeclareLaunchArgument(name, **kwargs))
    # A plain path (both files are installed side by side) lets `ros2 launch --show-args` list the node's arguments;
    # those the user gives reach the included file from this launch's configuration.
    actions.append(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fusion.launch.py")),
        launch_arguments={"use_sim_time": "true"}.items()))
    actions.append(OpaqueFunction(function=_launch_setup))
    return LaunchDescription(actions)
