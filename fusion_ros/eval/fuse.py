"""Batch fusion of image pairs and clips through :class:`fusion_ros.pipeline.fuser.Fuser`.

Pairs are independent images: the streaming memory (and the thermal AGC) are reset before each pair.
A clip is fused frame by frame with the memory carried from frame to frame (unless switched off).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.io.clips import iter_frames, list_frames
from fusion_ros.io.images import read_ir, read_vis, write_rgb
from fusion_ros.io.pairs import Pair, find_pairs
from fusion_ros.model.variants import VARIANTS

__all__ = ["StudentConfig", "make_fuser", "fuse_pair", "fuse_pairs", "iter_fused_clip", "fuse_video", "check_output_folder"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentConfig:
    """Which student model runs and how.

    Attributes:
        model_path: .onnx (sidecar .json/.pt beside it) or .pt; "", "lite" or "default" = a shipped model.
        backend: engine backend: auto | onnxruntime | torch | tensorrt.
        precision: fp32 | fp16 (fp16 only on GPU backends).
        threads: CPU inference threads, 0 = all cores.
        use_memory: carry the streaming memory between frames of a clip.
        auto_align: the pipeline's automatic thermal shift (FuserConfig.auto_align).
    """

    model_path: str = ""
    backend: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    use_memory: bool = True
    auto_align: bool = True

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads} must be >= 0 (0 = all cores)")
        if self.model_path not in ("", *VARIANTS) and not Path(self.model_path).expanduser().is_file():
            raise ConfigError(f"model_path={self.model_path!r} does not exist; pass an .onnx or .pt file "
                              "(e.g. models/fusion_lite.onnx) or leave it empty for the shipped model")


def make_fuser(cfg: StudentConfig = StudentConfig()):
    """Build engine backend + :class:`Fuser` for a student model (heavy imports happen here)."""
    from fusion_ros.engine import EngineConfig, create_backend
    from fusion_ros.pipeline.fuser import Fuser, FuserConfig

    backend = create_backend(EngineConfig(model_path=cfg.model_path, backend=cfg.backend, precision=cfg.precision,
                                          threads=cfg.threads))
    log.info("student %s on %s (%s)", cfg.model_path or "<shipped lite>", backend.name, backend.precision)
    return Fuser(backend, FuserConfig(use_memory=cfg.use_memory, auto_align=cfg.auto_align))


def check_output_folder(out_dir: str | Path, inputs: dict[str, str | Path]) -> Path:
    """Refuse an output folder that would write over the inputs.

    Args:
        out_dir: the output folder (``--out``).
        inputs: flag -> input path (a folder, or a file such as a video).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: ``out_dir`` is a file, or equals or lies inside an input folder (or is an input file).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the fused images")
    target = out.resolve()
    for flag, src in inputs.items():
        root = Path(src).resolve()
        if target == root or (root.is_dir() and target.is_relative_to(root)):
            raise ConfigError(f"--out {out} is inside the input {flag} {src}; fusing there would write over the inputs: "
                              "choose an --out outside it")
    return out


def _write_atomic(path: Path, rgb: np.ndarray) -> None:
    # A temporary name with the same suffix (the image format follows it), renamed: no half-written PNG is ever left.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write_rgb(tmp, rgb)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fuse_pair(fuser, pair: Pair) -> np.ndarray:
    """Fuse one independent pair (memory and AGC reset first); (H, W, 3) uint8 RGB at the visible size."""
    fuser.reset()
    return fuser.step(read_ir(pair.ir_path), read_vis(pair.vi_path))


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="img")


def fuse_pairs(pairs_root: str | Path, out_dir: str | Path, fuser, progress: bool = True) -> list[Path]:
    """Fuse every pair under ``pairs_root`` into ``out_dir/<dataset>/<stem>.png``.

    Args:
        pairs_root: a dataset folder (ir/ + vi/) or a tree of them.
        out_dir: output root; the dataset sub-folders of ``pairs_root`` are mirrored.
        fuser: a :class:`Fuser`.
        progress: show a tqdm bar on stderr.

    Returns:
        The written files.

    Raises:
        ConfigError: ``out_dir`` is a file or inside ``pairs_root`` (see :func:`check_output_folder`).
    """
    out_dir = check_output_folder(out_dir, {"--pairs": pairs_root})
    pairs = find_pairs(pairs_root)
    written = []
    for pair in _progress(pairs, len(pairs), "fuse", progress):
        path = out_dir / pair.subdir / f"{pair.stem}.png"
        _write_atomic(path, fuse_pair(fuser, pair))
        written.append(path)
    return written


def iter_fused_clip(ir_src: str | Path, vi_src: str | Path, fuser,
                    on_frame: Callable[[float], None] | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Fuse a clip frame by frame, memory carried as configured in the fuser.

    Args:
        ir_src: thermal frame folder or video file.
        vi_src: visible frame folder or video file (frame i goes with thermal frame i).
        fuser: a :class:`Fuser`; it is reset once at the start of the clip.
        on_frame: called with the step time in seconds of each frame.

    Yields:
        (frame name, thermal (h, w), visible (H, W, 3) RGB, fused (H, W, 3) RGB).
    """
    fuser.reset()
    ir_it, vi_it = iter_frames(ir_src, "ir"), iter_frames(vi_src, "vi")
    n = 0
    for (_, ir), (name, vi) in zip(ir_it, vi_it):
        t0 = time.perf_counter()
        fused = fuser.step(ir, vi)
        if on_frame:
            on_frame(time.perf_counter() - t0)
        n += 1
        yield name, ir, vi, fused
    leftover = sum(1 for _ in ir_it) + sum(1 for _ in vi_it)
    if leftover:
        log.warning("%s / %s: frame counts differ, %d unpaired frames ignored after %d pairs",
                    ir_src, vi_src, leftover, n)
    if n == 0:
        raise FusionError(f"no frame pair in {ir_src} + {vi_src}")


def fuse_video(ir_src: str | Path, vi_src: str | Path, out_dir: str | Path, fuser, progress: bool = True) -> list[Path]:
    """Fuse a clip into ``out_dir/<frame>.png`` (frame folder names are kept, video frames numbered 0000...).

    Raises:
        ConfigError: ``out_dir`` is a file, or inside the thermal or visible source (see :func:`check_output_folder`).
    """
    out_dir = check_output_folder(out_dir, {"--video IR": ir_src, "--video VI": vi_src})
    written = []
    total = None
    if Path(vi_src).is_dir():
        total = len(list_frames(vi_src))
    for name, _, _, fused in _progress(iter_fused_clip(ir_src, vi_src, fuser), total, "fuse", progress):
        path = out_dir / f"{name}.png"
        _write_atomic(path, fused)
        written.append(path)
    return written
