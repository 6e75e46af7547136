"""Training data: aligned pair folders, video clips (mp4 or frame folders), held-out splits.

Normalisation is the node's (see ``docs`` / common interfaces): 8-bit thermal -> x/255 unchanged,
visible RGB uint8 -> /255. Images stay uint8 in memory (the whole shared training set is ~160 MB) and
become float tensors only per crop.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import FusionError

__all__ = ["PairRecord", "find_pairs", "load_pair", "split_pairs", "find_clips", "ClipSource", "read_clip_frames"]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class PairRecord:
    """One aligned pair on disk."""

    dataset: str      # dataset folder name (e.g. roadscene); "" for a bare <root>/{ir,vi} folder
    name: str         # file stem shared by ir/ and vi/
    ir: Path
    vi: Path

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}" if self.dataset else self.name


def _pairs_in(folder: Path, dataset: str) -> list[PairRecord]:
    ir_dir, vi_dir = folder / "ir", folder / "vi"
    vis = {p.stem: p for p in vi_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS}
    out = []
    for p in sorted(ir_dir.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and p.stem in vis:
            out.append(PairRecord(dataset, p.stem, p, vis[p.stem]))
    return out


def find_pairs(root: str | Path) -> list[PairRecord]:
    """All pairs under ``root``: either ``root/{ir,vi}`` or ``root/<dataset>/{ir,vi}``.

    Raises:
        FusionError: when ``root`` holds no pair folder.
    """
    root = Path(root)
    if (root / "ir").is_dir() and (root / "vi").is_dir():
        pairs = _pairs_in(root, "")
    else:
        pairs = []
        for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            if (sub / "ir").is_dir() and (sub / "vi").is_dir():
                pairs += _pairs_in(sub, sub.name)
    if not pairs:
        raise FusionError(f"no ir/vi pairs under '{root}'; expected <root>/ir + <root>/vi or <root>/<dataset>/{{ir,vi}}")
    return pairs


def load_pair(rec: PairRecord) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair as the teachers and the node see it.

    Returns:
        thermal (H, W) uint8 (a 3-channel gray file is read as gray), visible (H, W, 3) uint8 RGB.
    """
    ir = cv2.imread(str(rec.ir), cv2.IMREAD_GRAYSCALE)
    vi = cv2.imread(str(rec.vi), cv2.IMREAD_COLOR)
    if ir is None or vi is None:
        raise FusionError(f"cannot read pair {rec.key} ({rec.ir}, {rec.vi})")
    if ir.shape[:2] != vi.shape[:2]:
        raise FusionError(f"pair {rec.key}: ir {ir.shape[:2]} and vi {vi.shape[:2]} differ in size; register them first")
    return ir, cv2.cvtColor(vi, cv2.COLOR_BGR2RGB)


def _unit_hash(key: str) -> float:
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_pairs(pairs: list[PairRecord], val_fraction: float) -> tuple[list[PairRecord], list[PairRecord]]:
    """Deterministic train/val split by a hash of the pair key (stable when pairs are added)."""
    train = [p for p in pairs if _unit_hash(p.key) >= val_fraction]
    val = [p for p in pairs if _unit_hash(p.key) < val_fraction]
    if val_fraction > 0 and not val and len(pairs) > 1:
        val, train = train[-1:], train[:-1]
    return train, val


# --------------------------------------------------------------------------- video clips

@dataclass(frozen=True)
class ClipSource:
    """One registered video: two mp4 files or two frame folders."""

    name: str
    ir: Path          # ir.mp4 or ir/ folder
    vi: Path          # vi.mp4 or vi/ folder

    @property
    def is_video(self) -> bool:
        return self.ir.is_file()


def find_clips(root: str | Path) -> list[ClipSource]:
    """Clips under ``root``: ``<root>/<clip>/{ir,vi}.mp4`` or ``<root>/<clip>/{ir,vi}/*.png`` (or root itself)."""
    root = Path(root)
    cands = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    out = []
    for d in cands:
        if (d / "ir.mp4").is_file() and (d / "vi.mp4").is_file():
            out.append(ClipSource(d.name, d / "ir.mp4", d / "vi.mp4"))
        elif (d / "ir").is_dir() and (d / "vi").is_dir():
            out.append(ClipSource(d.name, d / "ir", d / "vi"))
    if not out:
        raise FusionError(f"no clips under '{root}'; expected <clip>/{{ir,vi}}.mp4 or <clip>/{{ir,vi}}/ frame folders")
    return out


def clip_length(src: ClipSource) -> int:
    """Number of frame pairs of a clip."""
    if src.is_video:
        caps = [cv2.VideoCapture(str(p)) for p in (src.ir, src.vi)]
        n = min(int(c.get(cv2.CAP_PROP_FRAME_COUNT)) for c in caps)
        for c in caps:
            c.release()
        return n
    return min(len([p for p in src.ir.iterdir() if p.suffix.lower() in IMAGE_EXTS]),
               len([p for p in src.vi.iterdir() if p.suffix.lower() in IMAGE_EXTS]))


def read_clip_frames(src: ClipSource, indices: list[int], scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames ``indices`` (sorted) of a clip.

    Returns:
        thermal (N, H, W) uint8, visible (N, H, W, 3) uint8 RGB; resized by ``scale`` (INTER_AREA).
    """
    want = sorted(set(indices))
    irs, vis = {}, {}
    if src.is_video:
        for path, store, gray in ((src.ir, irs, True), (src.vi, vis, False)):
            cap = cv2.VideoCapture(str(path))
            i, last = 0, want[-1]
            pos = set(want)
            while i <= last:
                ok, frame = cap.read()
                if not ok:
                    break
                if i in pos:
                    store[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if gray else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                i += 1
            cap.release()
    else:
        ir_files = sorted(p for p in src.ir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        vi_files = sorted(p for p in src.vi.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        for i in want:
            irs[i] = cv2.imread(str(ir_files[i]), cv2.IMREAD_GRAYSCALE)
            vis[i] = cv2.cvtColor(cv2.imread(str(vi_files[i]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    missing = [i for i in want if i not in irs or i not in vis]
    if missing:
        raise FusionError(f"clip {src.name}: frames {missing[:5]} could not be decoded")

    def rs(img: np.ndarray) -> np.ndarray:
        if scale == 1.0:
            return img
        h, w = img.shape[:2]
        return cv2.resize(img, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)

    return np.stack([rs(irs[i]) for i in indices]), np.stack([rs(vis[i]) for i in indices])
