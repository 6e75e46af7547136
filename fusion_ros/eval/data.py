"""Finding and reading IR/VIS pairs, clips and method outputs on disk.

Conventions (see ``shared/data/README.md``): a dataset folder holds ``ir/`` and ``vi/`` with the same
stems; IR is 8-bit grey (sometimes stored as 3 identical channels) or 16-bit; VIS is colour or grey.
A pairs root is either one dataset folder or a tree of them (``pairs/dev`` -> ``roadscene/``, ``tno/``...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fusion_ros.errors import FusionError

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "Pair", "find_pairs", "find_clips", "read_ir", "read_vis", "read_rgb_or_gray",
           "list_frames", "iter_frames", "find_output", "recolour", "write_rgb"]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")


@dataclass(frozen=True)
class Pair:
    """One registered IR/VIS pair.

    Attributes:
        dataset: dataset folder relative to the pairs root, or the root's own name when the root is the dataset.
        stem: file name without extension, shared by ir/ and vi/.
        ir_path: thermal image file.
        vi_path: visible image file.
        subdir: dataset folder relative to the pairs root ("" when the root is the dataset); outputs mirror it.
    """

    dataset: str
    stem: str
    ir_path: Path
    vi_path: Path
    subdir: str = ""

    @property
    def key(self) -> str:
        """Unique id: ``dataset/stem``."""
        return f"{self.dataset}/{self.stem}"


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTS}


def find_pairs(root: str | Path) -> list[Pair]:
    """All pairs under ``root``: a folder with ir/ + vi/, or any tree of such folders.

    Args:
        root: pairs folder.

    Returns:
        Pairs sorted by dataset then stem; stems present in only one of ir/ and vi/ are logged and skipped.

    Raises:
        FusionError: root missing or no pair found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FusionError(f"pairs folder {root} does not exist")
    dirs = [root] if (root / "ir").is_dir() and (root / "vi").is_dir() else sorted(
        p.parent for p in root.rglob("ir") if p.is_dir() and (p.parent / "vi").is_dir())
    pairs = []
    for d in dirs:
        ir, vi = _images(d / "ir"), _images(d / "vi")
        lone = sorted(set(ir) ^ set(vi))
        if lone:
            log.warning("%s: %d stems without a partner skipped (e.g. %s)", d, len(lone), lone[0])
        sub = "" if d == root else d.relative_to(root).as_posix()
        ds = sub or root.resolve().name
        pairs += [Pair(ds, s, ir[s], vi[s], sub) for s in sorted(set(ir) & set(vi))]
    if not pairs:
        raise FusionError(f"no IR/VIS pairs under {root}: expected ir/<name>.png + vi/<name>.png "
                          "in it or in its sub-folders")
    return pairs


def find_clips(root: str | Path) -> list[tuple[str, Path, Path]]:
    """Video clips under ``root``: (name, ir source, vi source), each a frame folder or a video file.

    A clip is a folder with ``ir/`` + ``vi/`` frame folders or ``ir.mp4`` + ``vi.mp4``; ``root`` may be
    one clip or a folder of clips.
    """
    root = Path(root)
    if not root.is_dir():
        raise FusionError(f"video folder {root} does not exist")

    def clip(d: Path) -> tuple[str, Path, Path] | None:
        if (d / "ir").is_dir() and (d / "vi").is_dir():
            return d.name, d / "ir", d / "vi"
        for ext in VIDEO_EXTS:
            if (d / f"ir{ext}").is_file() and (d / f"vi{ext}").is_file():
                return d.name, d / f"ir{ext}", d / f"vi{ext}"
        return None

    own = clip(root)
    clips = [own] if own else [c for c in (clip(d) for d in sorted(root.iterdir()) if d.is_dir()) if c]
    if not clips:
        raise FusionError(f"no clip under {root}: expected <clip>/ir/ + <clip>/vi/ frame folders or ir.mp4 + vi.mp4")
    return clips


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FusionError(f"cannot read image {path}")
    return img


def read_ir(path: str | Path) -> np.ndarray:
    """Thermal image as (H, W) uint8 or uint16; a 3-channel copy of grey keeps its first channel."""
    img = _read(Path(path))
    if img.ndim == 3:
        img = img[..., 0]
    return img


def read_vis(path: str | Path) -> np.ndarray:
    """Visible image as (H, W, 3) uint8 RGB; grey is replicated to three channels."""
    img = _read(Path(path))
    if img.dtype != np.uint8:
        raise FusionError(f"{path}: visible images must be 8-bit, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgb_or_gray(path: str | Path) -> np.ndarray:
    """A method's output: (H, W) uint8 when stored grey (e.g. a fused luminance), else (H, W, 3) RGB."""
    img = _read(Path(path))
    if img.ndim == 2:
        return img
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def find_output(folder: Path, pair: Pair) -> Path | None:
    """The output file of a method folder for a pair: ``folder/<dataset>/<stem>.*`` or ``folder/<stem>.*``.

    The dataset's last component is tried too, so a folder of datasets (teachers/<m>/dev) matches a pairs
    root that is a parent of the same dataset names.
    """
    cands = [folder / pair.dataset, folder / Path(pair.dataset).name, folder]
    for d in cands:
        for ext in IMAGE_EXTS:
            p = d / f"{pair.stem}{ext}"
            if p.is_file():
                return p
    return None


def recolour(luma: np.ndarray, vis_rgb: np.ndarray) -> np.ndarray:
    """Put a fused luminance (H, W) uint8 into the visible image's chroma (BT.601 YCrCb); (H, W, 3) RGB."""
    ycc = cv2.cvtColor(vis_rgb, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = luma
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def list_frames(src: str | Path) -> list[Path]:
    """Sorted frame files of a frame folder."""
    src = Path(src)
    frames = [p for p in sorted(src.iterdir()) if p.suffix.lower() in IMAGE_EXTS]
    if not frames:
        raise FusionError(f"frame folder {src} holds no image ({', '.join(IMAGE_EXTS)})")
    return frames


def iter_frames(src: str | Path, kind: str) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a clip, a frame folder or a video file, as (name, image).

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
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise FusionError(f"cannot open video {src}")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if kind == "ir":
                img = frame[..., 0] if frame.ndim == 3 else frame
            else:
                img = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else np.repeat(frame[..., None], 3, 2)
            yield f"{i:04d}", img
            i += 1
    finally:
        cap.release()


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) grey uint8 image (format from the suffix), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), img):
        raise FusionError(f"cannot write {path}")
