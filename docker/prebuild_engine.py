#!/usr/bin/env python3
"""Build (or reuse) the node's TensorRT engine before the node starts, from the same params file and overrides.

Run by docker/entrypoint.sh on every container start. The engine key (ONNX hash, TensorRT version, GPU, precision,
shape profile) is computed exactly as the node computes it, so the node finds the engine in the cache volume
instead of building it again; an engine from another TensorRT version or GPU has another key and is rebuilt.
Skipped (exit 0) when the configured backend is not TensorRT, or, with ``backend: auto``, when this machine cannot
run TensorRT. ``backend: tensorrt`` on a machine without it fails (exit 1) with the reason.

Usage::

    python3 docker/prebuild_engine.py --params-file config/fusion.yaml -- model_path:=/models/m.onnx backend:=tensorrt
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

log = logging.getLogger("prebuild_engine")

# ROS parameter name -> EngineConfig field (the node's mapping, fusion_ros/ros/params.py)
ENGINE_PARAMS = {"model_path": "model_path", "backend": "backend", "precision": "precision",
                 "engine_cache_dir": "cache_dir"}
NODE_KEYS = ("/**", "fusion_node", "/fusion_node", "**")


def node_parameters(params_file: Path) -> dict:
    """``ros__parameters`` of the sections of a ROS params file that apply to ``fusion_node``."""
    doc = yaml.safe_load(params_file.read_text()) or {}
    values: dict = {}
    for key in NODE_KEYS:  # later, more specific sections win, as in ROS
        section = doc.get(key) or {}
        values.update(section.get("ros__parameters") or {})
    return values


def launch_overrides(launch_args: list[str]) -> dict:
    """``model_path:=x backend:=y`` launch arguments that override the params file (empty = not set)."""
    out = {}
    for arg in launch_args:
        name, sep, value = arg.partition(":=")
        if sep and name in ("model_path", "backend") and value:
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--params-file", type=Path, required=True, help="the params file the node will use")
    parser.add_argument("launch_args", nargs="*", help="launch arguments (name:=value) given to the container")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[prebuild_engine] %(message)s")

    from fusion_ros.engine import EngineConfig, create_backend
    from fusion_ros.engine.tensorrt_backend import tensorrt_available
    from fusion_ros.errors import FusionError

    if not args.params_file.is_file():
        log.error("params file %s not found", args.params_file)
        return 1
    values = node_parameters(args.params_file)
    values.update(launch_overrides(args.launch_args))
    backend = values.get("backend", EngineConfig.backend)
    if backend not in ("auto", "tensorrt"):
        log.info("backend '%s' needs no engine; nothing to build", backend)
        return 0
    ok, why = tensorrt_available()
    if not ok:
        if backend == "tensorrt":
            log.error("backend 'tensorrt' requested but TensorRT cannot run here: %s "
                      "(start the container with --gpus all, or set backend:=onnxruntime)", why)
            return 1
        log.info("no TensorRT here (%s); the node will use another backend", why)
        return 0
    kwargs = {field: values[name] for name, field in ENGINE_PARAMS.items() if name in values}
    kwargs["backend"] = "tensorrt"
    try:
        cfg = EngineConfig(**kwargs)
        log.info("building or loading the TensorRT %s engine in %s (a first build may take minutes)",
                 cfg.precision, cfg.cache_dir)
        start = time.monotonic()
        engine = create_backend(cfg)
    except FusionError as exc:
        log.error("%s", exc)
        return 1
    log.info("engine ready in %.1f s: %s", time.monotonic() - start, engine.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
