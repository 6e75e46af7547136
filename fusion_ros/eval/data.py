"""Method outputs on disk: the fused image a method folder holds for a pair, and fused luminances recoloured.

Pairs, clips and images are read by :mod:`fusion_ros.io`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fusion_ros.io.images import IMAGE_EXTS
from fusion_ros.io.pairs import Pair

__all__ = ["find_output", "recolour"]


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
