"""The node's ROS parameters, declared in one place from the typed dataclasses.

Every parameter is a field of :class:`~fusion_ros.engine.EngineConfig`, :class:`~fusion_ros.pipeline.FuserConfig`,
:class:`~fusion_ros.pipeline.SyncConfig`, :class:`~fusion_ros.pipeline.StreamConfig` or :class:`NodeConfig`; the defaults live only there. This module
derives the ROS type, the ``ParameterDescriptor`` (description, range, read-only) and the README table
from those fields, reads the values once at configure, and validates live updates.

``parameter_specs()`` and ``parameter_table_markdown()`` do not import rclpy.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from fusion_ros.engine import BACKENDS, PRECISIONS, EngineConfig
from fusion_ros.errors import ConfigError
from fusion_ros.pipeline.fuser import FuserConfig
from fusion_ros.pipeline.image_codec import RGB_ENCODINGS
from fusion_ros.pipeline.stream import StreamConfig
from fusion_ros.pipeline.sync import SyncConfig

__all__ = ["NodeConfig", "NodeSettings", "ParamSpec", "parameter_specs", "parameter_table_markdown",
           "declare_parameters", "read_parameters", "apply_parameter_changes"]


@dataclass(frozen=True)
class NodeConfig:
    """Node-level settings (output, zero stamps, diagnostics, start-up)."""

    # Output encoding; "" = the RGB input's encoding.
    output_encoding: str = field(default="", metadata={
        "doc": "encoding of fused/image_raw; empty = the RGB input's encoding (" + ", ".join(RGB_ENCODINGS) + ")"})
    # Zero-stamped frames: False = counted and dropped; True = paired by arrival time (header kept as is).
    use_arrival_time_for_zero_stamps: bool = field(default=False, metadata={
        "doc": "pair frames whose header stamp is zero by their arrival time instead of dropping them"})
    # Live registration health: one residual estimate every this many seconds, off the fusion path; 0 = off.
    registration_check_period_s: float = field(default=1.0, metadata={
        "doc": "estimate the residual misregistration of the homography every this many seconds, off the fusion "
               "path (registration_error_px in /diagnostics); 0 = off", "range": (0.0, 3600.0)})
    # registration_error_px above this -> WARN.
    registration_warn_px: float = field(default=3.0, metadata={
        "doc": "registration_error_px, or the automatic shift (auto_align_shift_px), above this -> WARN in "
               "/diagnostics (recalibrate: fusion-ros calibrate)",
        "range": (0.1, 1000.0)})
    # /diagnostics period, s (> 0).
    diagnostics_period_s: float = field(default=1.0, metadata={
        "doc": "period of /diagnostics (published whether or not anyone subscribes), s",
        "range": (0.05, 60.0), "read_only": True})
    # Configure + activate at start-up (ros2 run); False = wait for lifecycle transitions.
    autostart: bool = field(default=True, metadata={
        "doc": "configure and activate at start-up; false = wait for lifecycle transitions (ros2 lifecycle set)",
        "read_only": True})

    def __post_init__(self) -> None:
        if self.output_encoding and self.output_encoding not in RGB_ENCODINGS:
            raise ConfigError(f"output_encoding '{self.output_encoding}' unsupported; use '' (same as the RGB input) "
                              f"or one of {', '.join(RGB_ENCODINGS)}")
        if not self.diagnostics_period_s > 0:
            raise ConfigError(f"diagnostics_period_s={self.diagnostics_period_s} must be > 0 seconds")


# EngineConfig's fields under their ROS names (``cache_dir`` is ``engine_cache_dir`` on the node).
_ENGINE_PARAMS = {
    # ros name: (EngineConfig field, description, choices)
    "model_path": ("model_path", "fusion model (.onnx with its .json/.pt sidecars); empty = the shipped lite model",
                   None),
    "backend": ("backend", "inference backend", BACKENDS),
    "precision": ("precision", "inference precision (fp16 on GPU backends)", PRECISIONS),
    "engine_cache_dir": ("cache_dir", "where TensorRT engines and timing caches are cached", None),
    "device": ("device", "device for the torch / onnxruntime backends", ("auto", "cpu", "cuda")),
    "threads": ("threads", "CPU threads for inference; 0 = all cores but one (left to the node's preparing, "
                "publishing and DDS threads)", None),
    "busy_wait": ("busy_wait", "with threads > 1 on ONNX Runtime: its inference threads spin between operations "
                  "(faster alone); false yields their cores to other processes, such as a camera driver", None),
}


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter."""

    name: str
    group: str                      # engine | fuser | sync | stream | node
    field: str                      # field of the group's dataclass
    type: str                       # bool | integer | double | string | double_array | integer_array
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False


_GROUPS = {"engine": EngineConfig, "fuser": FuserConfig, "sync": SyncConfig, "stream": StreamConfig,
           "node": NodeConfig}


def _ros_type(hint: Any) -> str:
    if hint is bool:
        return "bool"
    if hint is int:
        return "integer"
    if hint is float:
        return "double"
    if hint is str:
        return "string"
    if typing.get_origin(hint) in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return "integer_array" if args and args[0] is int else "double_array"
    raise TypeError(f"no ROS parameter type for {hint!r}")


def _ros_value(value: Any, typ: str) -> Any:
    if typ == "double_array":
        return [float(v) for v in value]
    if typ == "integer_array":
        return [int(v) for v in value]
    return value


def parameter_specs() -> list[ParamSpec]:
    """All node parameters in declaration order (engine, pipeline, sync, stream, node)."""
    specs: list[ParamSpec] = []
    eng_hints = typing.get_type_hints(EngineConfig)
    eng_defaults = EngineConfig()
    for name, (fname, doc, choices) in _ENGINE_PARAMS.items():
        typ = _ros_type(eng_hints[fname])
        specs.append(ParamSpec(name, "engine", fname, typ, _ros_value(getattr(eng_defaults, fname), typ),
                               doc + " (built/loaded at configure)", None,
                               tuple(choices) if choices else None, read_only=True))
    for group in ("fuser", "sync", "stream", "node"):
        cls = _GROUPS[group]
        hints = typing.get_type_hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            typ = _ros_type(hints[f.name])
            meta = f.metadata
            specs.append(ParamSpec(f.name, group, f.name, typ, _ros_value(getattr(defaults, f.name), typ),
                                   meta.get("doc", ""), meta.get("range"), None, bool(meta.get("read_only", False))))
    return specs


def parameter_table_markdown() -> str:
    """The README parameter table (image_proc ``components.rst`` style: name, type, default, meaning)."""
    rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
    for s in parameter_specs():
        default = f"`{s.default!r}`" if s.type != "string" else f"`\"{s.default}\"`"
        extra = []
        if s.choices:
            extra.append("one of " + ", ".join(f"`{c}`" for c in s.choices))
        if s.range:
            extra.append(f"range [{s.range[0]:g}, {s.range[1]:g}]")
        if s.read_only:
            extra.append("read-only")
        desc = s.description + (f" ({'; '.join(extra)})" if extra else "")
        rows.append(f"| `{s.name}` | {s.type} | {default} | {desc} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class NodeSettings:
    """Validated settings of every group."""

    engine: EngineConfig
    fuser: FuserConfig
    sync: SyncConfig
    node: NodeConfig
    stream: StreamConfig = StreamConfig()


def _build(values: dict[str, Any]) -> NodeSettings:
    """Build every config from ``{param name: value}``; a ConfigError names the parameter."""
    specs = parameter_specs()
    kwargs: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
    for s in specs:
        v = values[s.name]
        if s.choices and v not in s.choices:
            raise ConfigError(f"parameter '{s.name}' = {v!r} invalid; expected one of {', '.join(s.choices)}")
        if s.range and not s.range[0] <= v <= s.range[1]:
            raise ConfigError(f"parameter '{s.name}' = {v!r} out of range [{s.range[0]}, {s.range[1]}]")
        kwargs[s.group][s.field] = tuple(v) if s.type.endswith("_array") else v
    out = {}
    for group, cls in _GROUPS.items():
        try:
            out[group] = cls(**kwargs[group])
        except ConfigError as exc:
            msg = str(exc).replace("cache_dir", "engine_cache_dir") if group == "engine" else str(exc)
            raise ConfigError(f"invalid fusion_node parameter: {msg}") from None
    return NodeSettings(**out)


def declare_parameters(node) -> None:
    """Declare every parameter on ``node`` with a ParameterDescriptor (type, description, range, read-only)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {"bool": ParameterType.PARAMETER_BOOL, "integer": ParameterType.PARAMETER_INTEGER,
             "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
             "double_array": ParameterType.PARAMETER_DOUBLE_ARRAY,
             "integer_array": ParameterType.PARAMETER_INTEGER_ARRAY}
    for s in parameter_specs():
        d = ParameterDescriptor(name=s.name, type=types[s.type], read_only=s.read_only,
                                description=s.description + (f"; one of {', '.join(s.choices)}" if s.choices else ""))
        if s.range and s.type == "double":
            d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]), to_value=float(s.range[1]))]
        elif s.range and s.type == "integer":
            d.integer_range = [IntegerRange(from_value=int(s.range[0]), to_value=int(s.range[1]), step=1)]
        node.declare_parameter(s.name, s.default, d)


def network_threads(threads: int) -> int:
    """The node's inference threads for parameter ``threads``: as given, or for 0 every core this process may use
    but one. The network shares the CPU with the node's own threads (preparing the next frame, publishing the last
    one, DDS); on a 2-core machine the network on both cores kept up worse than on one."""
    if threads:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def read_parameters(node) -> NodeSettings:
    """Read every parameter once and validate it. Raises ConfigError naming the parameter."""
    values = {s.name: node.get_parameter(s.name).value for s in parameter_specs()}
    return _build(values)


def apply_parameter_changes(current: NodeSettings, changes: dict[str, Any]) -> NodeSettings:
    """Validate a live update (``ros2 param set``) against all other current values.

    Raises:
        ConfigError: an unknown or read-only parameter, or an invalid value (message names it).
    """
    specs = {s.name: s for s in parameter_specs()}
    values = {}
    for s in specs.values():
        v = getattr(getattr(current, s.group), s.field)
        values[s.name] = list(v) if isinstance(v, tuple) else v
    for name, value in changes.items():
        if name not in specs:
            raise ConfigError(f"unknown parameter '{name}'")
        if specs[name].read_only:
            raise ConfigError(f"parameter '{name}' is read-only at runtime; set it in the params file and restart")
        values[name] = value
    return _build(values)


# Names a node accepts without declaring them here (rclpy and QoS overrides).
_IMPLICIT_PREFIXES = ("qos_overrides.",)
_IMPLICIT_NAMES = ("use_sim_time", "start_type_description_service", "start_parameter_event_publisher")


def unknown_parameter_names(names) -> list[tuple[str, str | None]]:
    """Override names that are not parameters of the node, each with the closest declared name (or None)."""
    import difflib

    declared = [s.name for s in parameter_specs()]
    unknown = [n for n in names if n not in declared and n not in _IMPLICIT_NAMES
               and not n.startswith(_IMPLICIT_PREFIXES)]
    return [(n, next(iter(difflib.get_close_matches(n, declared, n=1, cutoff=0.6)), None)) for n in sorted(unknown)]


def settings_from_values(overrides: dict[str, Any]) -> NodeSettings:
    """Settings from the node's defaults and ``overrides`` ({parameter name: value}), validated as the node does.

    Raises:
        ConfigError: an unknown name (with the closest parameter name) or an invalid value.
    """
    unknown = unknown_parameter_names(overrides)
    if unknown:
        raise ConfigError("unknown parameter(s): " + ", ".join(
            f"'{n}'" + (f" (did you mean '{c}'?)" if c else "") for n, c in unknown))
    values = {s.name: s.default for s in parameter_specs()}
    values.update({k: v for k, v in overrides.items() if k in values})
    return _build(values)
