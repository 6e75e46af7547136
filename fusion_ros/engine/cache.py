"""TensorRT engine cache: keys, file layout, stale-engine detection and optimization-profile shapes.

An engine is only valid for the exact ONNX file, TensorRT version, GPU (name and compute
capability), precision and shape range it was built for. The key hashes all of them; the record
beside each engine lists them in clear, so a foreign or stale engine is detected and rebuilt,
never silently used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from fusion_ros.errors import ConfigError

__all__ = ["EngineKey", "EngineCache", "shape_profile"]


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str                 # e.g. "8.9"
    precision: str                          # fp32 | fp16
    min_hw: tuple[int, int]
    opt_hw: tuple[int, int]
    max_hw: tuple[int, int]

    def digest(self) -> str:
        blob = json.dumps(self.as_record(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    def as_record(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class EngineCache:
    """Files under ``root``: ``<stem>-<digest>.engine`` + ``.json`` record, one ``timing-<gpu>.cache`` per GPU/TensorRT."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.expanduser(str(root)))

    def engine_path(self, stem: str, key: EngineKey) -> Path:
        return self.root / f"{stem}-{key.digest()}.engine"

    def record_path(self, engine_path: Path) -> Path:
        return engine_path.with_suffix(".json")

    def timing_cache_path(self, key: EngineKey) -> Path:
        gpu = "".join(c if c.isalnum() else "_" for c in key.gpu_name)
        return self.root / f"timing-{gpu}-sm{key.compute_capability.replace('.', '')}-trt{key.tensorrt_version}.cache"

    def is_valid(self, engine_path: Path, key: EngineKey) -> tuple[bool, str]:
        """Whether ``engine_path`` was built for ``key``; the reason when it was not."""
        if not engine_path.is_file():
            return False, "no engine built yet"
        rec_path = self.record_path(engine_path)
        if not rec_path.is_file():
            return False, f"engine {engine_path.name} has no build record (foreign or interrupted build)"
        try:
            record = json.loads(rec_path.read_text())
        except json.JSONDecodeError:
            return False, f"build record {rec_path.name} is unreadable"
        want = key.as_record()
        diffs = [f"{k}: built for {record.get(k)!r}, need {v!r}" for k, v in want.items() if record.get(k) != v]
        if diffs:
            return False, "stale engine (" + "; ".join(diffs) + ")"
        return True, "up to date"

    def write(self, engine_path: Path, engine_bytes: bytes, key: EngineKey) -> None:
        """Write engine then record, each atomically, so an interrupted build never looks valid."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = engine_path.with_suffix(".engine.tmp")
        tmp.write_bytes(engine_bytes)
        os.replace(tmp, engine_path)
        rec_tmp = engine_path.with_suffix(".json.tmp")
        rec_tmp.write_text(json.dumps(key.as_record(), indent=2) + "\n")
        os.replace(rec_tmp, self.record_path(engine_path))


def shape_profile(min_hw: tuple[int, int], opt_hw: tuple[int, int], max_hw: tuple[int, int], stride: int,
                  memory_channels: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes per ONNX input for a TensorRT optimization profile.

    The memory input follows the image size by the sidecar's rule ``ceil(H / stride)``.
    """
    if not all(a <= b <= c for a, b, c in zip(min_hw, opt_hw, max_hw)):
        raise ConfigError(f"shape range must satisfy min <= opt <= max, got {min_hw}, {opt_hw}, {max_hw}")

    def mem(hw: tuple[int, int]) -> tuple[int, ...]:
        return (1, memory_channels, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))

    return {
        "thermal": tuple((1, 1, *hw) for hw in (min_hw, opt_hw, max_hw)),
        "visible": tuple((1, 3, *hw) for hw in (min_hw, opt_hw, max_hw)),
        "memory": tuple(mem(hw) for hw in (min_hw, opt_hw, max_hw)),
    }
