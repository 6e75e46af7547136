"""Start the thermal + RGB fusion node with its topics remapped onto your cameras.

The node's own topic names are relative (``rgb/image_raw``, ``rgb/camera_info``, ``thermal/image_raw``,
``fused/image_raw``, ``fused/camera_info``); this file only remaps them, and ``fused/camera_info`` follows
``fused_image_topic`` (a sibling ``camera_info``, as image_pipeline does). Every tunable lives in the params file
(``config/fusion.yaml``); ``model_path`` and ``backend`` override it only when set, so the defaults are never
declared twice.

Examples::

    ros2 launch fusion_ros fusion.launch.py
    ros2 launch fusion_ros fusion.launch.py \\
        rgb_image_topic:=/camera/color/image_raw rgb_info_topic:=/camera/color/camera_info \\
        thermal_image_topic:=/boson/image_raw fused_image_topic:=/camera/fused/image_raw
    ros2 launch fusion_ros fusion.launch.py backend:=tensorrt model_path:=/models/fusion_lite.onnx log_level:=debug

The file has no side effects: it starts the node and nothing else (no subprocess, no file writes, no eval).
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fusion_ros"
EXECUTABLE = "fusion_node"
NODE_NAME = "fusion_node"

BACKEND_CHOICES = ["", "auto", "tensorrt", "onnxruntime", "torch"]
LOG_LEVEL_CHOICES = ["debug", "info", "warn", "error", "fatal"]

# (name, default, description, choices). The topic defaults are the node's own names, so leaving an
# argument out leaves that topic unremapped (relative, i.e. inside `namespace`).
ARGUMENTS = [
    ("rgb_image_topic", "rgb/image_raw",
     "RGB camera image (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8, yuv422...); remapped onto rgb/image_raw",
     None),
    ("rgb_info_topic", "rgb/camera_info",
     "RGB camera_info (sensor_msgs/CameraInfo), republished with the fused image; remapped onto rgb/camera_info",
     None),
    ("thermal_image_topic", "thermal/image_raw",
     "thermal camera image (mono16/16UC1 radiometric counts or mono8/8UC1); remapped onto thermal/image_raw",
     None),
    ("fused_image_topic", "fused/image_raw",
     "fused output image (same encoding, size and header as the RGB input); fused/camera_info is remapped "
     "to the sibling 'camera_info' of this topic",
     None),
    ("namespace", "", "namespace of the node (relative topics resolve inside it); empty = none", None),
    ("params_file", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fusion.yaml"]),
     "YAML file with the node's parameters (see config/fusion.yaml and config/cameras/)", None),
    ("model_path", "",
     "fusion model .onnx (with its .json/.pt beside it); empty = keep the params file's model_path", None),
    ("backend", "",
     "inference backend; empty = keep the params file's backend", BACKEND_CHOICES),
    ("use_sim_time", "false", "use the /clock topic (bag replay with --clock)", ["true", "false"]),
    ("log_level", "info", "log level of the node", LOG_LEVEL_CHOICES),
]


def sibling_info_topic(image_topic: str) -> str:
    """``a/b/image_raw`` -> ``a/b/camera_info`` (camera_info sits next to its image)."""
    head, sep, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}{sep}camera_info"


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    fused_image = arg("fused_image_topic")
    remappings = [
        ("rgb/image_raw", arg("rgb_image_topic")),
        ("rgb/camera_info", arg("rgb_info_topic")),
        ("thermal/image_raw", arg("thermal_image_topic")),
        ("fused/image_raw", fused_image),
        ("fused/camera_info", sibling_info_topic(fused_image)),
    ]
    # Later entries win, so the overrides come after the params file and only when given.
    overrides = {"use_sim_time": arg("use_sim_time") == "true"}
    for name in ("model_path", "backend"):
        value = arg(name)
        if value:
            overrides[name] = value
    node = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=arg("namespace"),
        parameters=[arg("params_file"), overrides],
        remappings=remappings,
        ros_arguments=["--log-level", arg("log_level")],
        output="screen",
        emulate_tty=True,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node (built once the arguments are known)."""
    actions = [DeclareLaunchArgument(name, default_value=default, description=description, choices=choices)
               for name, default, description, choices in ARGUMENTS]
    actions.append(OpaqueFunction(function=_launch_setup))
    return LaunchDescription(actions)
