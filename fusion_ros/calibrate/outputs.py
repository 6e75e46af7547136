"""What ``fusion-ros calibrate`` writes: the params fragment, the JSON report and the before | after overlay.

Every file is written to a temporary name beside it and renamed into place, so an interrupted run leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.pipeline.registration_estimate import to_gray

__all__ = ["output_paths", "check_writable", "params_yaml", "write_atomic", "write_json", "write_png", "overlay_image"]


def output_paths(out: str | Path) -> dict[str, Path]:
    """The three outputs of a run: ``FILE.yaml``, ``FILE.report.json`` and ``FILE.overlay.png``."""
    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--out {out}: expected a .yaml params file, e.g. --out calib.yaml")
    stem = out.with_suffix("")
    return {"params": out, "report": Path(f"{stem}.report.json"), "overlay": Path(f"{stem}.overlay.png")}


def check_writable(paths: dict[str, Path], force: bool) -> None:
    """Refuse (before any work) to overwrite existing outputs without ``force``."""
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise ConfigError(f"--out: {', '.join(existing)} exist(s); pass --force to overwrite or choose another --out")
    for p in paths.values():
        if not p.parent.is_dir():
            raise ConfigError(f"--out: folder {p.parent} does not exist")


def params_yaml(homography: np.ndarray, comment: str) -> str:
    """A ROS 2 params-file fragment for every node name: ``/**: ros__parameters: homography: [...]``."""
    values = ", ".join(f"{float(v):.8g}" for v in np.asarray(homography, np.float64).ravel())
    lines = [f"# {line}" for line in comment.splitlines()]
    return "\n".join(lines + ["/**:", "  ros__parameters:", f"    homography: [{values}]", ""])


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:       # also on Ctrl-C: no temporary file is left behind
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FusionError(f"cannot encode the overlay for {path}")
    write_atomic(path, buf.tobytes())


def _panel(thermal: np.ndarray, rgb: np.ndarray, h: np.ndarray, label: str, width: int) -> np.ndarray:
    """Warped thermal in grey with the RGB edges drawn over it in green."""
    g_rgb = to_gray(rgb)
    hh, ww = g_rgb.shape
    k = min(1.0, width / ww)
    size = (round(ww * k), round(hh * k))
    g_th = to_gray(thermal)
    m = np.diag([k, k, 1.0]) @ h @ np.diag([ww / g_th.shape[1], hh / g_th.shape[0], 1.0])
    warped = cv2.warpPerspective(g_th, m, size)
    small = cv2.resize(g_rgb, size, interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(cv2.GaussianBlur((small * 255).astype(np.uint8), (0, 0), 1.0), 40, 100) > 0
    out = np.repeat((warped * 200)[..., None], 3, axis=2).astype(np.uint8)
    out[edges] = (0, 255, 0)
    cv2.putText(out, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 64, 64), 2, cv2.LINE_AA)
    return out


def overlay_image(thermal: np.ndarray, rgb: np.ndarray, before: np.ndarray, after: np.ndarray,
                  labels: tuple[str, str] = ("before", "after"), width: int = 640) -> np.ndarray:
    """Side by side: the thermal frame warped by ``before`` | by ``after``, RGB edges in green over each.

    Args:
        thermal: (h, w) thermal (float in [0, 1], uint8 or uint16).
        rgb: (H, W, 3) uint8 RGB.
        before, after: (3, 3) homographies (node convention).
        labels: text drawn on each panel.
        width: width of each panel, pixels (the images are scaled down to it).

    Returns:
        (H', 2 W' + 4, 3) uint8 RGB.
    """
    a = _panel(thermal, rgb, before, labels[0], width)
    b = _panel(thermal, rgb, after, labels[1], width)
    gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
    return np.hstack([a, gap, b])
