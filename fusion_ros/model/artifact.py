"""The model artifact: how a student is stored on disk, and the checks that hold its files together.

A model ``X`` is three files side by side:

- ``X.onnx``: the graph with its weights; inputs ``thermal``, ``visible``, ``memory``, outputs ``fused``, ``memory_out``;
- ``X.json``: the sidecar: model config, input normalisation, stride, memory shape rule, and the sha256 of ``X.onnx``;
- ``X.pt``: plain state dict + model config (+ the training record) for the torch backend and for fine-tuning.

Every backend opens a model through :func:`open_artifact`, which checks that the sidecar belongs to the
``.onnx`` beside it (sha256); the backend then holds the graph's inputs (or the weights' config) against
the sidecar's memory shape. Reading and checking import no torch: only the functions that save or load
weights do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from fusion_ros.config import to_dict
from fusion_ros.errors import ConfigError

if TYPE_CHECKING:
    from fusion_ros.model.student import FusionStudent, ModelConfig

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "SIDECAR_VERSION", "Artifact", "artifact_files", "existing_files", "load_meta",
           "load_student", "open_artifact", "read_sidecar", "reexport_hint", "sha256_file", "sidecar_path", "weights_path",
           "write_artifact", "write_derived_sidecar"]

log = logging.getLogger(__name__)

INPUT_NAMES = ("thermal", "visible", "memory")
OUTPUT_NAMES = ("fused", "memory_out")
SIDECAR_VERSION = 1
REQUIRED_SIDECAR_KEYS = ("onnx_sha256", "stride", "memory_channels")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def weights_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".pt")


def artifact_files(onnx_path: str | Path) -> tuple[Path, Path, Path]:
    """``(X.onnx, X.json, X.pt)`` of a model ``X``."""
    p = Path(onnx_path)
    return p, sidecar_path(p), weights_path(p)


def existing_files(onnx_path: str | Path) -> list[Path]:
    """The files of model ``X`` that exist already (what writing ``X`` would replace)."""
    return [p for p in artifact_files(onnx_path) if p.exists()]


def reexport_hint(onnx_path: str | Path) -> str:
    """The command that writes a consistent artifact at ``onnx_path`` again."""
    pt = weights_path(onnx_path)
    source = str(pt) if pt.is_file() else "<weights.pt>"
    return f"re-export it: fusion-ros export --checkpoint {source} --out {onnx_path} --force"


# ---------------------------------------------------------------------------------------------- reading and checking
def read_sidecar(onnx_path: str | Path) -> dict:
    """The JSON sidecar next to an ONNX model, with the keys every backend needs.

    Raises:
        ConfigError: the sidecar is missing, is not JSON, or lacks a required key (the message names ``model_path``).
    """
    p = sidecar_path(onnx_path)
    if not p.is_file():
        raise ConfigError(f"model_path '{onnx_path}': sidecar {p} not found; pass the .json exported with this .onnx "
                          f"beside it, or {reexport_hint(onnx_path)}")
    try:
        side = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model_path '{onnx_path}': sidecar {p} is not valid JSON ({exc}); restore the .json exported "
                          f"with this .onnx, or {reexport_hint(onnx_path)}") from None
    missing = [k for k in REQUIRED_SIDECAR_KEYS if not isinstance(side, dict) or k not in side]
    if missing:
        raise ConfigError(f"model_path '{onnx_path}': sidecar {p} lacks {', '.join(missing)}; {reexport_hint(onnx_path)}")
    return side


@dataclass(frozen=True)
class Artifact:
    """An exported model whose sidecar was checked against its ``.onnx`` (see :func:`open_artifact`)."""

    onnx_path: Path
    sidecar: dict

    @property
    def stride(self) -> int:
        return int(self.sidecar["stride"])

    @property
    def memory_channels(self) -> int:
        return int(self.sidecar["memory_channels"])

    @property
    def model_name(self) -> str:
        return str(self.sidecar.get("model", "?"))

    @property
    def onnx_sha256(self) -> str:
        return str(self.sidecar["onnx_sha256"])

    def _mismatch(self, what: str) -> ConfigError:
        return ConfigError(f"model_path '{self.onnx_path}': {what}; pass the sidecar exported with this .onnx, "
                           f"or {reexport_hint(self.onnx_path)}")

    def check_graph_inputs(self, shapes: Mapping[str, Sequence[Any]]) -> None:
        """Hold a graph's input shapes (name -> dims; a str, None or negative dim is dynamic) against the sidecar.

        Raises:
            ConfigError: an input is missing, or the channels or rank differ from what the sidecar describes.
        """
        missing = [n for n in INPUT_NAMES if n not in shapes]
        if missing:
            raise self._mismatch(f"the graph has inputs {sorted(shapes)}, expected {', '.join(INPUT_NAMES)}")
        channels = {"thermal": 1, "visible": 3, "memory": self.memory_channels}
        for name, want in channels.items():
            dims = list(shapes[name])
            c = dims[1] if len(dims) == 4 else None
            if len(dims) != 4 or (isinstance(c, int) and c >= 0 and c != want):
                raise self._mismatch(f"the graph's '{name}' input is {tuple(dims)}, the sidecar {sidecar_path(self.onnx_path).name} "
                                     f"describes (1, {want}, h, w)")

    def check_weights(self, cfg: "ModelConfig") -> None:
        """Hold the weights' model config (``X.pt``) against the sidecar: same variant, stride and memory shape."""
        got = {"model": cfg.name, "stride": cfg.stride, "memory_channels": cfg.state_channels}
        want = {"model": self.model_name, "stride": self.stride, "memory_channels": self.memory_channels}
        diffs = [f"{k} {got[k]} in {weights_path(self.onnx_path).name}, {want[k]} in the sidecar" for k in got if got[k] != want[k]]
        if diffs:
            raise ConfigError(f"model_path '{self.onnx_path}': the weights belong to another model ({'; '.join(diffs)}); "
                              f"put the .pt exported with this .onnx beside it, or {reexport_hint(self.onnx_path)}")


def open_artifact(onnx_path: str | Path) -> Artifact:
    """Read the sidecar of ``onnx_path`` and check that it was written for this very file (sha256).

    Raises:
        ConfigError: a missing or broken sidecar, or one that belongs to another ``.onnx``.
    """
    p = Path(onnx_path)
    side = read_sidecar(p)
    on_disk = sha256_file(p)
    if on_disk != side["onnx_sha256"]:
        raise ConfigError(f"model_path '{p}': sidecar {sidecar_path(p).name} was written for another ONNX file "
                          f"(sha256 {str(side['onnx_sha256'])[:12]}... in the sidecar, {on_disk[:12]}... on disk); "
                          f"pass the sidecar exported with this .onnx, or {reexport_hint(p)}")
    return Artifact(p, side)


# ---------------------------------------------------------------------------------------------- writing
def _sidecar(cfg: "ModelConfig", onnx_sha256: str, opset: int, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": SIDECAR_VERSION,
        "model": cfg.name,
        "config": to_dict(cfg),
        "inputs": {
            "thermal": "(1, 1, H, W) float32 in [0, 1]: 8-bit thermal / 255, or 16-bit after ThermalAGC",
            "visible": "(1, 3, H, W) float32 RGB in [0, 1] (uint8 / 255)",
            "memory": "(1, C, ceil(H/stride), ceil(W/stride)) float32; zeros on the first frame",
        },
        "outputs": {"fused": "(1, 3, H, W) float32 RGB in [0, 1]", "memory_out": "same shape as memory"},
        "normalisation": {"thermal_scale": 1.0 / 255.0, "visible_scale": 1.0 / 255.0, "mean": 0.0, "std": 1.0},
        "stride": cfg.stride,
        "memory_channels": cfg.state_channels,
        "memory_shape_rule": "(1, memory_channels, ceil(H / stride), ceil(W / stride))",
        "uses_memory": cfg.use_memory,
        "opset": opset,
        "onnx_sha256": onnx_sha256,
        "meta": meta,
    }


def _staging(path: Path) -> Path:
    # Same folder, so that os.replace is a rename on one file system; the suffix stays (tools pick formats by it).
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_artifact(onnx_path: str | Path, write_graph: Callable[[Path], None], cfg: "ModelConfig", state_dict: Mapping[str, Any],
                   opset: int, meta: dict[str, Any] | None = None) -> Path:
    """Write model ``X`` = ``onnx_path``: the graph (by ``write_graph(path)``), the weights and the sidecar.

    Each file is written under a temporary name in the same folder and renamed into place at the end, the
    sidecar last: an interrupted write leaves the previous model, or files whose sha256 disagree (refused at
    load), never a half-written file.

    Returns:
        The ``.onnx`` path.
    """
    import torch

    files = artifact_files(onnx_path)
    staged = [_staging(p) for p in files]
    files[0].parent.mkdir(parents=True, exist_ok=True)
    try:
        write_graph(staged[0])
        torch.save({"config": to_dict(cfg), "state_dict": dict(state_dict), "meta": meta or {}}, staged[2])
        staged[1].write_text(json.dumps(_sidecar(cfg, sha256_file(staged[0]), opset, meta or {}), indent=2) + "\n")
        for i in (2, 0, 1):                          # weights, graph, then the sidecar that vouches for the graph
            os.replace(staged[i], files[i])
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
    return files[0]


def write_derived_sidecar(src_onnx: str | Path, out_onnx: str | Path, meta: Mapping[str, Any]) -> Path:
    """The sidecar of a graph derived from model ``src_onnx`` (an FP16 or INT8 copy, same inputs and memory):
    the source's sidecar with the new file's sha256 and ``meta`` added, written atomically. The copy is then a
    model of its own for every backend; its ``.pt`` weights stay those of the source."""
    side = read_sidecar(src_onnx)
    derived = {**side, "onnx_sha256": sha256_file(out_onnx),
               "meta": {**side.get("meta", {}), "derived_from": str(src_onnx),
                        "derived_from_sha256": side["onnx_sha256"], **meta}}
    path = sidecar_path(out_onnx)
    tmp = _staging(path)
    try:
        tmp.write_text(json.dumps(derived, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------------------------------------- weights (torch)
def _config_from_dict(d: dict) -> "ModelConfig":
    from fusion_ros.model.student import MODELS, ModelConfig

    # Fields a saved config predates take the named variant's value, not the dataclass default.
    d = {**MODELS.get(d.get("name", ""), {}), **d}
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return ModelConfig(**d)


def _load_blob(p: Path, map_location: str = "cpu") -> Any:
    import torch

    if not p.is_file():
        raise ConfigError(f"model weights '{p}' not found; pass a .pt written by `fusion-ros export` or training")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises pickle, zip and runtime errors for a file that is no checkpoint
        # torch's own text suggests weights_only=False, which is no fix for a file that is not a checkpoint.
        raise ConfigError(f"model weights '{p}' are not a readable PyTorch checkpoint ({type(exc).__name__}); "
                          "pass a .pt written by `fusion-ros export` or training") from None


def load_student(path: str | Path, map_location: str = "cpu", allow_new_modules: bool = False) -> "FusionStudent":
    """Load a student from ``X.pt`` (or from ``X.onnx``, using the ``X.pt`` beside it). Returns it in eval mode.

    Args:
        allow_new_modules: start modules that the checkpoint predates (whole submodules such as ``history``)
            from their initialisation instead of failing; any other mismatch still fails. For fine-tuning.
    """
    from fusion_ros.model.student import FusionStudent

    p = Path(path)
    if p.suffix == ".onnx":
        p = weights_path(p)
    blob = _load_blob(p, map_location)
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ConfigError(f"model weights '{p}' hold no 'config' + 'state_dict'; pass a .pt written by `fusion-ros export` or training")
    model = FusionStudent(_config_from_dict(blob["config"]))
    if not allow_new_modules:
        model.load_state_dict(blob["state_dict"])
        return model.eval()
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    new_modules = {k.split(".")[0] for k in missing}
    partial = [k for k in blob["state_dict"] if k.split(".")[0] in new_modules]
    if unexpected or partial:
        raise ConfigError(f"{p} does not match the model: unexpected {unexpected[:5]}, partly present {partial[:5]}")
    if missing:
        log.info("%s predates module(s) %s; they start from their initialisation", p, sorted(new_modules))
    return model.eval()


def load_meta(path: str | Path) -> dict:
    """The ``meta`` record (how the weights were trained) of an export-format ``.pt``; {} when it has none."""
    p = Path(path)
    blob = _load_blob(weights_path(p) if p.suffix == ".onnx" else p)
    return dict(blob.get("meta", {})) if isinstance(blob, dict) else {}
