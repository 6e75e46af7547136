"""Training data: aligned pair folders, video clips (mp4 or frame folders), held-out splits.

Files are read by :mod:`fusion_ros.io` (the readers of ``fuse``, ``eval`` and the demo player). The network is
trained on 8-bit thermal, normalised as the node normalises it (``x / 255``); a 16-bit thermal file is brought to
8 bits by the node's AGC (one frame's percentiles, no smoothing). Images stay uint8 in memory (the whole shared
training set is ~160 MB) and become float tensors only per crop.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_ros.errors import FusionError
from fusion_ros.io import clips as io_clips
from fusion_ros.io import pairs as io_pairs
from fusion_ros.io.clips import Clip as ClipSource
from fusion_ros.io.clips import clip_length
from fusion_ros.io.images import read_ir, read_vis

__all__ = ["PairRecord", "find_pairs", "load_pair", "split_pairs", "find_clips", "ClipSource", "clip_length",
           "read_clip_frames", "thermal_8bit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairRecord:
    """One aligned pair on disk."""

    dataset: str      # dataset folder relative to the root (e.g. roadscene); "" for a bare <root>/{ir,vi} folder
    name: str         # file stem shared by ir/ and vi/
    ir: Path
    vi: Path

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}" if self.dataset else self.name


def find_pairs(root: str | Path) -> list[PairRecord]:
    """All pairs under ``root``: ``root/{ir,vi}`` or ``root/<dataset>/{ir,vi}`` (see :func:`fusion_ros.io.pairs.find_pairs`).

    Raises:
        FusionError: when ``root`` holds no pair folder.
    """
    return [PairRecord(p.subdir, p.stem, p.ir_path, p.vi_path) for p in io_pairs.find_pairs(root)]


def thermal_8bit(thermal: np.ndarray) -> np.ndarray:
    """8-bit thermal unchanged; 16-bit mapped to uint8 by the node's AGC on this frame alone."""
    if thermal.dtype == np.uint8:
        return thermal
    from fusion_ros.pipeline.agc import AGCConfig, ThermalAGC

    return np.rint(ThermalAGC(AGCConfig(agc_smoothing=1.0))(thermal) * 255.0).astype(np.uint8)


def load_pair(rec: PairRecord) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair as the teachers and the node see it.

    Returns:
        thermal (H, W) uint8 (see :func:`thermal_8bit`), visible (H, W, 3) uint8 RGB.
    """
    ir, vi = thermal_8bit(read_ir(rec.ir)), read_vis(rec.vi)
    if ir.shape[:2] != vi.shape[:2]:
        raise FusionError(f"pair {rec.key}: ir {ir.shape[:2]} and vi {vi.shape[:2]} differ in size; register them first")
    return ir, vi


def _unit_hash(key: str) -> float:
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_pairs(pairs: list[PairRecord], val_fraction: float) -> tuple[list[PairRecord], list[PairRecord]]:
    """Deterministic train/val split by a hash of the pair key (stable when pairs are added)."""
    train = [p for p in pairs if _unit_hash(p.key) >= val_fraction]
    val = [p for p in pairs if _unit_hash(p.key) < val_fraction]
    if val_fraction > 0 and not val and len(pairs) > 1:
        val, train = train[-1:], train[:-1]
    return train, val


def find_clips(root: str | Path) -> list[ClipSource]:
    """Clips under ``root`` (see :func:`fusion_ros.io.clips.find_clips`)."""
    return io_clips.find_clips(root)


def read_clip_frames(src: ClipSource, indices: list[int], scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``indices`` of a clip: thermal (N, H, W) uint8 (see :func:`thermal_8bit`), visible (N, H, W, 3) RGB."""
    thermal, visible = io_clips.read_clip_frames(src, indices, scale)
    if thermal.dtype != np.uint8:
        thermal = np.stack([thermal_8bit(t) for t in thermal])
    return thermal, visible
