"""Pair folders: ``ir/<stem>.*`` + ``vi/<stem>.*`` of the same size, or a tree of such folders.

Conventions (see ``shared/data/README.md``): a dataset folder holds ``ir/`` and ``vi/`` with the same stems. A
pairs root is either one dataset folder or a tree of them (``pairs/dev`` -> ``roadscene/``, ``tno/``, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fusion_ros.errors import FusionError
from fusion_ros.io.images import IMAGE_EXTS

__all__ = ["Pair", "find_pairs"]

log = logging.getLogger(__name__)


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
