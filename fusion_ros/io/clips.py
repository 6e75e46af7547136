"""Clips: a registered IR/VIS video as two frame folders (``ir/``, ``vi/``) or two video files (``ir.mp4``, ``vi.mp4``).

Frame i of the IR source goes with frame i of the VI source. Frames are read with :mod:`fusion_ros.io.images`'
rules, so a frame gives the same pixels from a folder as from a still pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import cv2
import numpy as np

from fusion_ros.errors import FusionError
from fusion_ros.io.images import IMAGE_EXTS, ir_from_bgr, read_ir, read_vis, vis_from_bgr

__all__ = ["VIDEO_EXTS", "Clip", "find_clips", "list_frames", "iter_frames", "clip_length", "read_clip_frames",
           "video_fps"]

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")


class Clip(NamedTuple):
    """One registered clip: ``ir`` and ``vi`` are both frame folders or both video files."""

    name: str
    ir: Path
    vi: Path

    @property
    def is_video(self) -> bool:
        return self.ir.is_file()


def _clip_in(d: Path) -> Clip | None:
    if (d / "ir").is_dir() and (d / "vi").is_dir():
        return Clip(d.name, d / "ir", d / "vi")
    for ext in VIDEO_EXTS:
        if (d / f"ir{ext}").is_file() and (d / f"vi{ext}").is_file():
            return Clip(d.name, d / f"ir{ext}", d / f"vi{ext}")
    return None


def find_clips(root: str | Path) -> list[Clip]:
    """Clips under ``root``: ``root`` itself when it is one, else each sub-folder that is one, sorted by name.

    Raises:
        FusionError: root missing or no clip found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FusionError(f"video folder {root} does not exist")
    own = _clip_in(root)
    clips = [own] if own else [c for c in (_clip_in(d) for d in sorted(root.iterdir()) if d.is_dir()) if c]
    if not clips:
        raise FusionError(f"no clip under {root}: expected <clip>/ir/ + <clip>/vi/ frame folders or ir.mp4 + vi.mp4")
    return clips


def list_frames(src: str | Path) -> list[Path]:
    """Sorted frame files of a frame folder."""
    src = Path(src)
    frames = [p for p in sorted(src.iterdir()) if p.suffix.lower() in IMAGE_EXTS]
    if not frames:
        raise FusionError(f"frame folder {src} holds no image ({', '.join(IMAGE_EXTS)})")
    return frames


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise FusionError(f"cannot open video {path}")
    return cap


def _convert(frame: np.ndarray, kind: str) -> np.ndarray:
    return ir_from_bgr(frame) if kind == "ir" else vis_from_bgr(frame)


def iter_frames(src: str | Path, kind: str) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a frame folder or a video file, as (name, image).

    Args:
        src: folder of frames (sorted by name) or a video file.
        kind: "ir" gives (H, W) uint8/uint16, "vi" gives (H, W, 3) uint8 RGB.

    Yields:
        (frame stem or zero-padded index, image).
    """
    src = Path(src)
    if src.is_dir():
        for p in list_frames(src):
            yield p.stem, read_ir(p) if kind == "ir" else read_vis(p)
        return
    if not src.is_file():
        raise FusionError(f"clip source {src} is neither a frame folder nor a video file")
    cap = _open(src)
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield f"{i:04d}", _convert(frame, kind)
            i += 1
    finally:
        cap.release()


def video_fps(path: str | Path) -> float:
    """Frame rate a video file declares; 0.0 when it declares none."""
    cap = _open(Path(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def clip_length(clip: Clip) -> int:
    """Number of frame pairs of a clip."""
    if clip.is_video:
        caps = [_open(p) for p in (clip.ir, clip.vi)]
        n = min(int(c.get(cv2.CAP_PROP_FRAME_COUNT)) for c in caps)
        for c in caps:
            c.release()
        return n
    return min(sum(p.suffix.lower() in IMAGE_EXTS for p in d.iterdir()) for d in (clip.ir, clip.vi))


def _video_frames(path: Path, want: list[int], kind: str) -> dict[int, np.ndarray]:
    got: dict[int, np.ndarray] = {}
    pos = set(want)
    cap = _open(path)
    try:
        for i in range(want[-1] + 1):
            ok, frame = cap.read()
            if not ok:
                break
            if i in pos:
                got[i] = _convert(frame, kind)
    finally:
        cap.release()
    return got


def read_clip_frames(clip: Clip, indices: list[int], scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames ``indices`` of a clip.

    Returns:
        thermal (N, H, W) at the frames' bit depth, visible (N, H, W, 3) uint8 RGB; resized by ``scale``
        (INTER_AREA, at least 8 px a side).

    Raises:
        FusionError: a frame could not be decoded.
    """
    want = sorted(set(indices))
    if clip.is_video:
        irs, vis = _video_frames(clip.ir, want, "ir"), _video_frames(clip.vi, want, "vi")
    else:
        ir_files, vi_files = list_frames(clip.ir), list_frames(clip.vi)
        n = min(len(ir_files), len(vi_files))
        irs = {i: read_ir(ir_files[i]) for i in want if i < n}
        vis = {i: read_vis(vi_files[i]) for i in want if i < n}
    missing = [i for i in want if i not in irs or i not in vis]
    if missing:
        raise FusionError(f"clip {clip.name}: frames {missing[:5]} could not be decoded")

    def rs(img: np.ndarray) -> np.ndarray:
        if scale == 1.0:
            return img
        h, w = img.shape[:2]
        return cv2.resize(img, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)

    return np.stack([rs(irs[i]) for i in indices]), np.stack([rs(vis[i]) for i in indices])
