#!/usr/bin/env bash
# Container entrypoint: build (or reuse) the TensorRT engine into the cache volume, then run the launch file.
#
#   docker run --gpus all -v fusion_engines:/root/.cache/fusion_ros fusion_ros:jazzy \
#       rgb_image_topic:=/camera/color/image_raw thermal_image_topic:=/boson/image_raw
#
# Arguments of the form name:=value go to `ros2 launch fusion_ros fusion.launch.py`. A first argument naming a
# command (bash, ros2, fusion-ros, colcon, python3, ...) runs that command instead, in the sourced environment.
# Environment: FUSION_PARAMS_FILE (params file, default the installed config/fusion.yaml),
#              FUSION_PREBUILD_ENGINE=0 (skip the pre-build; the node then builds at configure).
set -euo pipefail

# shellcheck disable=SC1090
source "${ROS_SETUP:-/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash}"
# shellcheck disable=SC1091
source /ws/install/setup.bash

if [[ $# -gt 0 && "$1" != *":="* ]]; then
  exec "$@"
fi

share="$(ros2 pkg prefix fusion_ros)/share/fusion_ros"
params_file="${FUSION_PARAMS_FILE:-${share}/config/fusion.yaml}"
for arg in "$@"; do
  [[ "$arg" == params_file:=* ]] && params_file="${arg#params_file:=}"
done

if [[ "${FUSION_PREBUILD_ENGINE:-1}" == "1" ]]; then
  python3 /ws/src/fusion_ros/docker/prebuild_engine.py --params-file "$params_file" -- "$@"
fi

exec ros2 launch fusion_ros fusion.launch.py params_file:="$params_file" "$@"
