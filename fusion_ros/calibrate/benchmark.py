"""Known-answer accuracy of the registration estimate on real aligned pairs (``fusion-ros calibrate --self-test``).

Each *group* is a set of frames of one scene source at one size: a video/dev clip, or a pairs/dev dataset with
its pairs resized to a common size (one rig has one resolution). A trial draws a random misregistration H
(:func:`~fusion_ros.pipeline.registration_estimate.random_homography`: shifts 5-30 px, rotations up to 5 deg,
scale 0.9-1.1, +-2 % perspective), makes the thermal frames a camera with that misregistration would have
recorded (``raw = warp(thermal, H^-1)``, so ``H`` registers ``raw`` again), and estimates from N frames.

Two errors are reported, as the mean corner distance in RGB pixels:

* ``absolute``: the estimate against H. It includes the data set's own registration error and any part of
  the scene a homography cannot describe (parallax), which no estimator can remove.
* ``recovery``: the estimate against ``H0 @ H``, where H0 is the estimate on the same frames without the warp,
  i.e. how exactly a known misregistration is undone.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from fusion_ros.errors import FusionError
from fusion_ros.pipeline.registration_estimate import EstimateConfig, corner_error, estimate_homography, \
    random_homography

__all__ = ["GROUPS", "load_groups", "misregister", "render_board", "run_known_warps"]

# (path under the data folder, common size or None = as stored)
GROUPS = (
    ("video/dev/0111_1753", None),
    ("video/dev/0114_1551", None),
    ("video/dev/0115_1831", None),
    ("pairs/dev/msrs", None),
    ("pairs/dev/tno", (640, 480)),
    ("pairs/dev/roadscene", (512, 320)),
    ("pairs/dev/flir", (512, 320)),
)


def load_groups(data_root: str | Path, names: tuple[str, ...] | None = None,
                max_frames: int | None = None) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Frames of the known-answer groups: name -> [(thermal (H, W) uint8, rgb (H, W, 3) uint8)].

    Args:
        data_root: the shared ``data`` folder (holding pairs/ and video/), or one pair / clip folder.
        names: group paths to load (default: all of :data:`GROUPS` present).
        max_frames: keep at most this many frames per group (evenly spaced).
    """
    from fusion_ros.io.images import read_ir, read_vis
    from fusion_ros.io.pairs import find_pairs

    root = Path(data_root)
    # One pair or clip folder is a group of its own; otherwise the known groups under the data folder.
    wanted = [(root.name, root, None)] if (root / "ir").is_dir() and (root / "vi").is_dir() else \
        [(rel, root / rel, size) for rel, size in GROUPS if (names is None or rel in names) and (root / rel).is_dir()]
    groups = {}
    for rel, folder, size in wanted:
        frames = []
        for p in find_pairs(folder):
            th, rgb = read_ir(p.ir_path), read_vis(p.vi_path)
            if th.dtype != np.uint8:
                raise FusionError(f"{p.ir_path}: known-answer groups need 8-bit thermal, got {th.dtype}")
            if size is not None:
                th = cv2.resize(th, size, interpolation=cv2.INTER_AREA)
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            frames.append((th, rgb))
        if max_frames and len(frames) > max_frames:
            frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
        groups[rel] = frames
    if not groups:
        raise FusionError(f"--self-test {root}: no known-answer group; expected a folder with ir/ + vi/ or one "
                          f"holding {', '.join(g for g, _ in GROUPS)}")
    return groups


def misregister(thermal: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The frame a thermal camera misregistered by ``h`` records: ``warp_thermal(result, h)`` gives ``thermal`` back.

    Pixels the warp brings in from outside the frame are mirrored scene, not black, so no artificial edge appears.
    """
    hh, ww = thermal.shape
    return cv2.warpPerspective(thermal, np.linalg.inv(h), (ww, hh), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)


def render_board(size: tuple[int, int], board: tuple[int, int], h: np.ndarray, square: int = 24,
                 invert: bool = False) -> np.ndarray:
    """A checkerboard image for known-answer tests of the heated-target mode.

    Args:
        size: (width, height) of the image.
        board: (columns, rows) of inner corners.
        h: (3, 3) placement of the board (board pixels -> image pixels).
        square: side of a square in board pixels.
        invert: swap dark and bright (a heated board seen by the thermal camera).

    Returns:
        (height, width) float32 in [0, 1], lightly blurred like a real lens.
    """
    cols, rows = board
    tiles = (np.indices((rows + 1, cols + 1)).sum(0) % 2).astype(np.float32)
    img = cv2.resize(tiles, ((cols + 1) * square, (rows + 1) * square), interpolation=cv2.INTER_NEAREST)
    img = cv2.copyMakeBorder(img, square, square, square, square, cv2.BORDER_CONSTANT, value=1.0)
    out = cv2.GaussianBlur(cv2.warpPerspective(img * 0.6 + 0.2, h, size, borderValue=0.8), (0, 0), 1.2)
    return 1.0 - out if invert else out


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"median_px": round(float(np.median(v)), 3), "p95_px": round(float(np.percentile(v, 95)), 3),
            "max_px": round(float(v.max()), 3), "trials": int(v.size)}


def run_known_warps(groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], frames_per_trial: int = 10,
                    trials: int = 5, seed: int = 0, cfg: EstimateConfig = EstimateConfig(), progress=None) -> dict:
    """Known-warp trials over every group; returns a JSON-ready summary (overall and per group).

    Args:
        groups: from :func:`load_groups`.
        frames_per_trial: frames each estimate sees (fewer when a group is smaller).
        trials: random misregistrations per group.
        seed: random seed (warps and frame choice).
        cfg: estimate settings.
        progress: optional callable run after each trial.
    """
    rng = np.random.default_rng(seed)
    per_group, absolute, recovery = {}, [], []
    t0, n_frames = time.perf_counter(), 0
    for name, frames in groups.items():
        h_img, w_img = frames[0][0].shape
        g_abs, g_rec, used = [], [], []
        for _ in range(trials):
            pick = rng.choice(len(frames), size=min(frames_per_trial, len(frames)), replace=False)
            h_true = random_homography(rng, (w_img, h_img))
            chosen = [frames[i] for i in pick]
            warped = estimate_homography(((misregister(th, h_true), rgb) for th, rgb in chosen), cfg)
            plain = estimate_homography(chosen, cfg)
            n_frames += 2 * len(chosen)
            g_abs.append(corner_error(warped.homography, h_true, (w_img, h_img)))
            g_rec.append(corner_error(warped.homography, plain.homography @ h_true, (w_img, h_img)))
            used.append(warped.frames_used)
            if progress is not None:
                progress()
        per_group[name] = {"size": [w_img, h_img], "frames": len(frames), "absolute": _summary(g_abs),
                           "recovery": _summary(g_rec), "frames_used_mean": round(float(np.mean(used)), 2)}
        absolute += g_abs
        recovery += g_rec
    return {"frames_per_trial": frames_per_trial, "trials_per_group": trials, "seed": seed, "model": cfg.model,
            "absolute": _summary(absolute), "recovery": _summary(recovery),
            "seconds_per_frame": round((time.perf_counter() - t0) / max(1, n_frames), 3), "groups": per_group}
