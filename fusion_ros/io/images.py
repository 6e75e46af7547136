"""Image files as the pipeline takes them: thermal (H, W) at the file's bit depth, visible (H, W, 3) RGB uint8.

One reader for every tool that feeds image files to the network (``fuse``, ``eval``, training, ``calibrate``,
the demo player), so that the same file gives the same pixels everywhere. A thermal file stored as three
channels (grey saved as colour, or an IR video) becomes one channel as OpenCV's BGR->grey luma, which equals
any one channel for a true grey image. A 16-bit thermal file stays 16-bit: the node's AGC maps it, as it maps a
mono16 camera.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import FusionError

__all__ = ["IMAGE_EXTS", "read_ir", "read_vis", "read_rgb_or_gray", "ir_from_bgr", "vis_from_bgr", "write_rgb"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FusionError(f"cannot read image {path}")
    return img


def ir_from_bgr(img: np.ndarray) -> np.ndarray:
    """A decoded thermal image (grey, BGR or BGRA, as OpenCV gives it) as (H, W) at its bit depth."""
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return img


def vis_from_bgr(img: np.ndarray) -> np.ndarray:
    """A decoded visible image (grey, BGR or BGRA, as OpenCV gives it) as (H, W, 3) RGB."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def read_ir(path: str | Path) -> np.ndarray:
    """Thermal image as (H, W) uint8 or uint16 (the file's depth); three channels become their BGR->grey luma."""
    return ir_from_bgr(_read(Path(path)))


def read_vis(path: str | Path) -> np.ndarray:
    """Visible image as (H, W, 3) uint8 RGB; grey is replicated to three channels, alpha dropped."""
    img = _read(Path(path))
    if img.dtype != np.uint8:
        raise FusionError(f"{path}: visible images must be 8-bit, got {img.dtype}")
    return vis_from_bgr(img)


def read_rgb_or_gray(path: str | Path) -> np.ndarray:
    """An 8-bit image as stored: (H, W) when grey (e.g. a fused luminance), else (H, W, 3) RGB."""
    img = _read(Path(path))
    return img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) grey uint8 image (format from the suffix), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), img):
        raise FusionError(f"cannot write {path}")
