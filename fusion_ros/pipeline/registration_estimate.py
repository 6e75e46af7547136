"""Estimating the thermal->RGB homography from ordinary scenes, and measuring a residual misregistration (ROS-free).

The two cameras see different physics, so intensities cannot be compared; edges can. Both images are turned
into *edge maps*: the gradient magnitude of the lightly blurred image divided by its local mean, so a faint
thermal edge weighs as much as a strong RGB one and the polarity (hot-on-cold or cold-on-hot) does not matter.
One frame is registered coarse to fine on a pyramid of edge maps:

1. coarse: normalised cross-correlation of the edge maps at 1/4 of the working size over a grid of rotations
   and scales (the translation comes from the correlation peak), which finds shifts of tens of pixels;
2. fine: OpenCV's ECC (enhanced correlation coefficient) on the edge maps at 1/4, 1/2 and the full working size,
   with the thermal frame's border masked out.

Many frames are combined robustly (:func:`combine_estimates`): every frame's estimate maps a grid of points,
frames far from the median are rejected as outliers, and each grid point is averaged over the remaining frames
weighted by how much structure the frame has *near that point* (edges present in both images), so a frame whose
lower half is a textureless road does not decide where the lower corners go. The model is then fitted to the
averaged points. Then every frame is refined again, starting from the combined estimate (ECC at 1/2 and the full
working size), and keeps the result whose edge maps correlate more; the frames are combined again (a frame
whose corners lie within half a pixel of the combined estimate's is left as it is). A frame whose
own search ended in a wrong local optimum (a scene with repeated structure, or edges that differ between the
cameras) is restarted near the consensus. The frames are kept for that as 8-bit greys at the working size
(0.6 MB per 640x480 pair).

Convention (:mod:`fusion_ros.pipeline.registration`): a homography maps thermal pixels, after the thermal image
has been resized to the RGB size, onto RGB pixels; :func:`~fusion_ros.pipeline.registration.warp_thermal`
applies it.

Example:
    >>> import cv2, numpy as np
    >>> rgb = cv2.resize((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8), (320, 240))
    >>> thermal = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)    # a stand-in that shares the RGB edges
    >>> round(estimate_residual(thermal, rgb, [1, 0, 6, 0, 1, 0, 0, 0, 1]))   # registered 6 px off
    6
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, FusionError, ShapeError

__all__ = ["MODELS", "EstimateConfig", "FrameEstimate", "CalibrationResult", "InsufficientStructureError",
           "edge_map", "working_pair", "WorkingPair", "estimate_frame", "combine_estimates", "estimate_homography", "estimate_residual",
           "corner_error", "fit_model", "random_homography", "to_gray", "BoardDetection", "find_board",
           "estimate_homography_checkerboard", "board_error"]

log = logging.getLogger(__name__)

MODELS = ("homography", "affine", "similarity")


class InsufficientStructureError(FusionError):
    """The frames do not carry enough structure seen by both cameras to register them."""


@dataclass(frozen=True)
class EstimateConfig:
    """Registration estimate settings."""

    # Transform family fitted: homography (8 dof), affine (6) or similarity (4: shift, rotation, scale).
    model: str = "homography"
    # Largest shift searched by the coarse stage, RGB pixels, > 0.
    max_shift_px: float = 48.0
    # Largest rotation searched by the coarse stage, degrees, >= 0.
    max_rotation_deg: float = 5.0
    # Largest relative scale change searched by the coarse stage (0.1 = 0.9 to 1.1), in [0, 0.5).
    max_scale_change: float = 0.1
    # Width of the finest pyramid level, pixels (the RGB image is scaled down to it when wider), >= 64.
    work_width: int = 640
    # A frame is used when this share of its pixels carries edges in both images after registration, in [0, 1).
    min_structure: float = 0.01
    # A frame is used when its edge maps correlate at least this much after registration (ECC's correlation), in
    # [0, 1): below it the search found no real match (a night frame, a scene flat in one camera).
    min_correlation: float = 0.2
    # A frame whose estimate is farther than this from the median (mean over a point grid), RGB px, is an outlier.
    outlier_px: float = 3.0
    # Fewest frames that must survive the structure and outlier checks, >= 1.
    min_frames: int = 1
    # After combining, every frame whose corners lie more than half a pixel from the combined estimate's is refined
    # again from it and keeps whichever result fits its edges better, then the frames are combined again; this many
    # times, >= 0 (0: off). A frame whose own search ended in a wrong local optimum is restarted near the consensus.
    refine_passes: int = 1

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model '{self.model}' unknown; use one of {', '.join(MODELS)}")
        if not self.max_shift_px > 0:
            raise ConfigError(f"max_shift_px={self.max_shift_px} must be > 0 pixels")
        if not self.max_rotation_deg >= 0:
            raise ConfigError(f"max_rotation_deg={self.max_rotation_deg} must be >= 0")
        if not 0 <= self.max_scale_change < 0.5:
            raise ConfigError(f"max_scale_change={self.max_scale_change} must be in [0, 0.5)")
        if self.work_width < 64:
            raise ConfigError(f"work_width={self.work_width} must be >= 64 pixels")
        if not 0 <= self.min_structure < 1:
            raise ConfigError(f"min_structure={self.min_structure} must be in [0, 1)")
        if not 0 <= self.min_correlation < 1:
            raise ConfigError(f"min_correlation={self.min_correlation} must be in [0, 1)")
        if not self.outlier_px > 0:
            raise ConfigError(f"outlier_px={self.outlier_px} must be > 0 pixels")
        if self.min_frames < 1:
            raise ConfigError(f"min_frames={self.min_frames} must be >= 1")
        if self.refine_passes < 0:
            raise ConfigError(f"refine_passes={self.refine_passes} must be >= 0")


@dataclass
class FrameEstimate:
    """The registration of one frame.

    Attributes:
        homography: (3, 3) float64, thermal (resized to RGB) -> RGB pixels.
        correlation: ECC correlation coefficient of the edge maps at the finest level, in [-1, 1] (NaN: failed).
        structure: share of pixels with edges in both images after registration, in [0, 1].
        support: (G, G) float32 structure near each point of the combination grid (see :func:`combine_estimates`).
    """

    homography: np.ndarray
    correlation: float
    structure: float
    support: np.ndarray = field(repr=False)


@dataclass
class CalibrationResult:
    """Outcome of :func:`estimate_homography`.

    Attributes:
        homography: (3, 3) float64 combined estimate, normalised so ``h[2, 2] == 1``.
        model: transform family fitted.
        frames: per-frame estimates, in input order.
        used: per frame, whether it entered the combination.
        reasons: per frame, "" when used, else why not ("little structure", "outlier", "failed").
        size: (width, height) of the RGB images.
    """

    homography: np.ndarray
    model: str
    frames: list[FrameEstimate]
    used: list[bool]
    reasons: list[str]
    size: tuple[int, int]

    @property
    def frames_used(self) -> int:
        return int(sum(self.used))


# -- images ---------------------------------------------------------------------------------------------------

def to_gray(img: np.ndarray) -> np.ndarray:
    """An RGB (H, W, 3) uint8, a grey (H, W) uint8/uint16 or a float image in [0, 1] -> (H, W) float32 in [0, 1].

    uint16 is stretched between its 1st and 99th percentile (a stand-in for the node's AGC when the caller has
    raw counts); the caller should prefer :class:`~fusion_ros.pipeline.agc.ThermalAGC`.
    """
    if img.ndim == 3:
        if img.shape[2] != 3 or img.dtype != np.uint8:
            raise ShapeError(f"colour image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)
    if img.ndim != 2:
        raise ShapeError(f"image must be (H, W) or (H, W, 3), got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1 / 255)
    if img.dtype.kind in "ui":
        lo, hi = np.percentile(img[::4, ::4], (1, 99))
        return np.clip((img.astype(np.float32) - lo) / max(float(hi - lo), 1.0), 0, 1)
    if img.dtype.kind == "f":
        return np.clip(img, 0, 1).astype(np.float32, copy=False)
    raise ShapeError(f"image dtype {img.dtype} unsupported; expected uint8, uint16 or float in [0, 1]")


def edge_map(gray: np.ndarray, sigma: float = 1.0, window: float = 8.0) -> np.ndarray:
    """Locally normalised gradient magnitude: edges of either polarity, faint or strong, weigh alike.

    Args:
        gray: (H, W) float32 in [0, 1].
        sigma: Gaussian blur before the gradient, pixels.
        window: scale of the local mean the magnitude is divided by, pixels.

    Returns:
        (H, W) float32 >= 0, about 1 on edges, lightly blurred so the alignment has a wide basin.
    """
    g = cv2.GaussianBlur(gray, (0, 0), sigma)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    # The floor keeps flat, noisy regions from being amplified into fake edges.
    local = cv2.GaussianBlur(mag, (0, 0), window) + np.float32(1e-3 + 0.05 * float(mag.mean()))
    return cv2.GaussianBlur(mag / local, (0, 0), 1.0)


# -- geometry -------------------------------------------------------------------------------------------------

def _scale(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def _similarity(center: tuple[float, float], angle_rad: float, scale: float) -> np.ndarray:
    c, s = scale * math.cos(angle_rad), scale * math.sin(angle_rad)
    cx, cy = center
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])


def _normalised(h: np.ndarray) -> np.ndarray:
    return h / h[2, 2]


def _grid(size: tuple[int, int], n: int = 5) -> np.ndarray:
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w, n), np.linspace(0, h, n))
    return np.stack([xs.ravel(), ys.ravel()], 1)


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)


def corner_error(h_est: np.ndarray, h_ref: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance, in pixels, between where two homographies put the four image corners.

    Args:
        h_est, h_ref: (3, 3) homographies.
        size: (width, height) of the image the corners belong to.
    """
    w, h = size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    return float(np.linalg.norm(_apply(h_est, corners) - _apply(h_ref, corners), axis=1).mean())


def fit_model(src: np.ndarray, dst: np.ndarray, model: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares fit of a transform family to point pairs.

    Args:
        src, dst: (N, 2) float points, N >= 4.
        model: one of :data:`MODELS`.
        weights: (N,) >= 0, or None for equal weights.

    Returns:
        (3, 3) float64 with ``[2, 2] == 1``.
    """
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    sw = np.sqrt(w / w.sum())
    # Normalise the points (Hartley) so the linear system is well conditioned.
    mean, spread = src.mean(0), src.std() + 1e-9
    t = np.array([[1 / spread, 0, -mean[0] / spread], [0, 1 / spread, -mean[1] / spread], [0, 0, 1.0]])
    s = (src - mean) / spread
    d = (dst - mean) / spread
    x, y, u, v = s[:, 0], s[:, 1], d[:, 0], d[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    if model == "homography":
        a = np.concatenate([np.stack([x, y, one, zero, zero, zero, -u * x, -u * y, -u], 1),
                            np.stack([zero, zero, zero, x, y, one, -v * x, -v * y, -v], 1)])
        a *= np.concatenate([sw, sw])[:, None]
        m = np.linalg.svd(a)[2][-1].reshape(3, 3)
    else:
        if model == "affine":
            a = np.concatenate([np.stack([x, y, one, zero, zero, zero], 1), np.stack([zero, zero, zero, x, y, one], 1)])
        else:  # similarity: u = a x - b y + tx, v = b x + a y + ty
            a = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
        rw = np.concatenate([sw, sw])
        p = np.linalg.lstsq(a * rw[:, None], np.concatenate([u, v]) * rw, rcond=None)[0]
        if model == "affine":
            m = np.array([[p[0], p[1], p[2]], [p[3], p[4], p[5]], [0, 0, 1.0]])
        else:
            m = np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]], [0, 0, 1.0]])
    return _normalised(np.linalg.inv(t) @ m @ t)


def random_homography(rng: np.random.Generator, size: tuple[int, int], shift_px: tuple[float, float] = (5, 30),
                      rotation_deg: float = 5.0, scale: tuple[float, float] = (0.9, 1.1),
                      perspective: float = 0.02) -> np.ndarray:
    """A random misregistration about the image centre, for known-answer tests.

    Args:
        rng: numpy random generator.
        size: (width, height).
        shift_px: range of the shift length, pixels (direction uniform).
        rotation_deg: largest rotation, degrees (uniform in +-).
        scale: range of the scale factor.
        perspective: largest relative depth change across half the image (0.02 = the frame's edges 2 % nearer
            or farther), uniform in +- per axis.

    Returns:
        (3, 3) float64 homography with ``[2, 2] == 1``.
    """
    w, h = size
    c = (w / 2, h / 2)
    r, phi = rng.uniform(*shift_px), rng.uniform(0, 2 * np.pi)
    px, py = rng.uniform(-perspective, perspective, 2) / np.array([w / 2, h / 2])
    to_c = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1.0]])
    persp = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1.0]])
    back = np.array([[1, 0, c[0] + r * np.cos(phi)], [0, 1, c[1] + r * np.sin(phi)], [0, 0, 1.0]])
    rot = _similarity((0.0, 0.0), np.deg2rad(rng.uniform(-rotation_deg, rotation_deg)), rng.uniform(*scale))
    return _normalised(back @ rot @ persp @ to_c)


# -- one frame ------------------------------------------------------------------------------------------------

_ECC_MOTION = {"homography": cv2.MOTION_HOMOGRAPHY, "affine": cv2.MOTION_AFFINE, "similarity": cv2.MOTION_AFFINE}
# ECC iterations by level, coarsest first: the coarse levels do the long moves, the finest one only polishes.
_ECC_ITERATIONS = (100, 50, 15)
_GRID = 5            # combination grid: _GRID x _GRID points over the image
_EDGE_LEVEL = 1.0    # an edge-map value above this counts as an edge when measuring structure


@dataclass
class _Level:
    rgb: np.ndarray       # edge map of the RGB image
    thermal: np.ndarray   # edge map of the (unwarped) thermal image
    mask: np.ndarray      # uint8 valid pixels of the thermal image (its border removed)
    to_level: np.ndarray  # RGB pixels -> this level's pixels


def _pyramid(thermal: np.ndarray, rgb: np.ndarray, work_width: int) -> list[_Level]:
    """Edge maps at the working size, 1/2 and 1/4 (finest first)."""
    h, w = rgb.shape
    base = min(1.0, work_width / w)
    levels = []
    for k in (1, 2, 4):
        lw, lh = max(16, round(w * base / k)), max(16, round(h * base / k))
        window = 8.0 if k == 1 else 4.0
        r = edge_map(cv2.resize(rgb, (lw, lh), interpolation=cv2.INTER_AREA), window=window)
        t = edge_map(cv2.resize(thermal, (lw, lh), interpolation=cv2.INTER_AREA), window=window)
        mask = np.zeros((lh, lw), np.uint8)
        mask[2:-2, 2:-2] = 255
        levels.append(_Level(r, t, mask, _scale(lw / w, lh / h)))
    return levels


def _to_level(h: np.ndarray, lv: _Level) -> np.ndarray:
    return lv.to_level @ h @ np.linalg.inv(lv.to_level)


def _from_level(h: np.ndarray, lv: _Level) -> np.ndarray:
    return _normalised(np.linalg.inv(lv.to_level) @ h @ lv.to_level)


def _coarse_search(lv: _Level, initial: np.ndarray, cfg: EstimateConfig) -> np.ndarray:
    """Best similarity-times-initial by normalised cross-correlation over rotations, scales and shifts."""
    lh, lw = lv.rgb.shape
    m = max(1, int(math.ceil(cfg.max_shift_px * lv.to_level[0, 0])))
    border = max(m, int(0.12 * min(lw, lh)))
    padded = cv2.copyMakeBorder(lv.rgb, m, m, m, m, cv2.BORDER_CONSTANT, value=0)
    angles = np.linspace(-cfg.max_rotation_deg, cfg.max_rotation_deg, 1 + 2 * math.ceil(cfg.max_rotation_deg / 2.5))
    scales = np.linspace(1 - cfg.max_scale_change, 1 + cfg.max_scale_change, 1 + 2 * math.ceil(cfg.max_scale_change / 0.05))
    h0 = _to_level(initial, lv)
    best, best_h = -2.0, h0
    for a in angles:
        for s in scales:
            cand = _similarity((lw / 2, lh / 2), np.deg2rad(a), s) @ h0
            warped = cv2.warpPerspective(lv.thermal, cand, (lw, lh))
            template = warped[border:lh - border, border:lw - border]
            score = cv2.matchTemplate(padded, template, cv2.TM_CCOEFF_NORMED)
            _, peak, _, (x, y) = cv2.minMaxLoc(score)
            if peak > best:
                shift = np.array([[1, 0, x - m - border], [0, 1, y - m - border], [0, 0, 1.0]])
                best, best_h = peak, shift @ cand
    return _from_level(best_h, lv)


def _ecc(lv: _Level, h: np.ndarray, model: str, iterations: int) -> tuple[np.ndarray, float]:
    """Refine ``h`` (RGB pixels) by ECC on one level; returns (h, correlation), the input back on failure."""
    warp = np.linalg.inv(_to_level(h, lv))          # ECC's warp maps template (RGB) to input (thermal) pixels
    motion = _ECC_MOTION[model]
    warp = _normalised(warp)
    w32 = (warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2]).astype(np.float32)
    try:
        cc, w32 = cv2.findTransformECCWithMask(lv.rgb, lv.thermal, None, lv.mask, w32, motion,
                                                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-6), 1)
    except cv2.error:       # ECC raises when it diverges or the images carry nothing to correlate
        return h, float("nan")
    warp = np.vstack([w32, [0, 0, 1]]).astype(np.float64) if w32.shape[0] == 2 else w32.astype(np.float64)
    out = np.linalg.inv(warp)
    if model == "similarity":
        out = _nearest_similarity(out)
    return _from_level(out, lv), float(cc)


def _nearest_similarity(h: np.ndarray) -> np.ndarray:
    a = h[:2, :2]
    c, s = (a[0, 0] + a[1, 1]) / 2, (a[1, 0] - a[0, 1]) / 2
    return np.array([[c, -s, h[0, 2]], [s, c, h[1, 2]], [0, 0, 1.0]])


def _support(lv: _Level, h: np.ndarray) -> tuple[float, np.ndarray]:
    """Share of pixels with edges in both images under ``h``, overall and near each combination grid point."""
    lh, lw = lv.rgb.shape
    warped = cv2.warpPerspective(lv.thermal, _to_level(h, lv), (lw, lh))
    both = ((warped > _EDGE_LEVEL) & (lv.rgb > _EDGE_LEVEL)).astype(np.float32)
    # Each grid point sees the cells around it: a blur as wide as the grid spacing, sampled at the points.
    spread = cv2.GaussianBlur(both, (0, 0), max(lw, lh) / (_GRID - 1) / 2)
    pts = _grid((lw - 1, lh - 1), _GRID)
    near = spread[np.rint(pts[:, 1]).astype(int), np.rint(pts[:, 0]).astype(int)]
    return float(both.mean()), near.reshape(_GRID, _GRID)


def estimate_frame(thermal: np.ndarray, rgb: np.ndarray, cfg: EstimateConfig = EstimateConfig(),
                   initial: np.ndarray | None = None) -> FrameEstimate:
    """Register one thermal frame onto its RGB frame.

    Args:
        thermal: (h, w) thermal image: float32 in [0, 1] (the node's AGC output), uint8, or uint16 counts;
            any size (it is resized to the RGB size, the homography convention).
        rgb: (H, W, 3) uint8 RGB or (H, W) grey.
        cfg: estimate settings.
        initial: (3, 3) starting homography (e.g. the one in use); None = identity. The coarse search is centred on it.

    Returns:
        :class:`FrameEstimate` in RGB pixels.

    Raises:
        ShapeError: an image of the wrong shape or dtype.
    """
    return _estimate_frame(_FramePair.of(thermal, rgb, cfg.work_width), cfg, initial)


@dataclass
class _FramePair:
    """One frame pair as the estimate works on it: greys at the working size, 8-bit (kept for the refinement)."""

    thermal: np.ndarray   # (h, w) uint8, resized to the RGB frame, then to the working size
    rgb: np.ndarray       # (h, w) uint8
    to_work: np.ndarray   # RGB pixels -> working pixels

    @classmethod
    def of(cls, thermal: np.ndarray, rgb: np.ndarray, work_width: int) -> _FramePair:
        g_rgb = to_gray(rgb)
        h, w = g_rgb.shape
        k = min(1.0, work_width / w)
        size = (max(16, round(w * k)), max(16, round(h * k)))
        g_th = cv2.resize(to_gray(thermal), size, interpolation=cv2.INTER_AREA)
        if size != (w, h):
            g_rgb = cv2.resize(g_rgb, size, interpolation=cv2.INTER_AREA)
        as_u8 = lambda g: np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
        return cls(as_u8(g_th), as_u8(g_rgb), _scale(size[0] / w, size[1] / h))

    def pyramid(self) -> list[_Level]:
        return _pyramid(self.thermal.astype(np.float32) / 255, self.rgb.astype(np.float32) / 255, self.thermal.shape[1])

    def to_rgb(self, e: FrameEstimate) -> FrameEstimate:
        e.homography = _normalised(np.linalg.inv(self.to_work) @ e.homography @ self.to_work)
        return e

    def to_working(self, h: np.ndarray) -> np.ndarray:
        return self.to_work @ h @ np.linalg.inv(self.to_work)


def _estimate_frame(pair: _FramePair, cfg: EstimateConfig, initial: np.ndarray | None) -> FrameEstimate:
    levels = pair.pyramid()
    h0 = pair.to_working(np.eye(3) if initial is None else np.asarray(initial, np.float64))
    return pair.to_rgb(_refine(levels, _coarse_search(levels[-1], h0, cfg), cfg, first_level=0))


def _restart(pair: _FramePair, h: np.ndarray, cfg: EstimateConfig) -> FrameEstimate:
    """The frame refined from ``h`` (RGB pixels) at 1/2 and the full working size, without the coarse search."""
    return pair.to_rgb(_refine(pair.pyramid(), pair.to_working(h), cfg, first_level=1))


def _refine(levels: list[_Level], h: np.ndarray, cfg: EstimateConfig, first_level: int) -> FrameEstimate:
    """ECC from ``h`` down the pyramid, from level ``first_level`` (0: the coarsest) to the finest."""
    cc = float("nan")
    for i, lv in enumerate(list(reversed(levels))[first_level:], start=first_level):
        # The coarsest level fits at most an affine transform: perspective is not observable at 1/4 size.
        model = cfg.model if i > 0 or cfg.model == "similarity" else "affine"
        h_new, cc_new = _ecc(lv, h, model, _ECC_ITERATIONS[i])
        if math.isfinite(cc_new):
            h, cc = h_new, cc_new
    structure, support = _support(levels[0], h)
    return FrameEstimate(h, cc, structure, support)


# -- many frames ----------------------------------------------------------------------------------------------

def combine_estimates(estimates: Sequence[FrameEstimate], size: tuple[int, int], cfg: EstimateConfig = EstimateConfig(),
                      ) -> tuple[np.ndarray, list[str]]:
    """Robust combination of per-frame estimates into one transform.

    Frames with too little structure, a failed ECC or a correlation below ``cfg.min_correlation`` are skipped;
    each remaining frame maps a grid of points, frames whose points lie on average more than
    ``max(cfg.outlier_px, 3 MAD)`` from the per-point median are outliers; every grid point is then averaged over the inliers, weighted by each frame's structure near it, and
    ``cfg.model`` is fitted to the averaged points (weighted by the structure they have in total).

    Args:
        estimates: per-frame estimates.
        size: (width, height) of the RGB images.
        cfg: settings (model, min_structure, outlier_px, min_frames).

    Returns:
        ((3, 3) homography, per frame: "" when used, else the reason it was not).

    Raises:
        InsufficientStructureError: fewer than ``cfg.min_frames`` frames usable.
    """
    reasons = ["" if math.isfinite(e.correlation) else "failed" for e in estimates]
    reasons = [r or ("little structure" if e.structure < cfg.min_structure else "") for r, e in zip(reasons, estimates)]
    reasons = [r or ("no match" if e.correlation < cfg.min_correlation else "") for r, e in zip(reasons, estimates)]
    ok = [i for i, r in enumerate(reasons) if not r]
    if len(ok) < cfg.min_frames:
        best = max((e.structure for e in estimates), default=0.0)
        raise InsufficientStructureError(
            f"only {len(ok)} of {len(estimates)} frames carry enough structure seen by both cameras "
            f"(edges in both images on >= {cfg.min_structure:.1%} of the pixels, best frame {best:.1%}; "
            f"edge maps correlating >= {cfg.min_correlation:.2f} after registration); "
            "record scenes with buildings, poles, vehicles or people at the working distance, "
            "or use a heated target (--target checkerboard)")
    grid = _grid(size, _GRID)
    pts = np.stack([_apply(estimates[i].homography, grid) for i in ok])          # (F, G, 2)
    median = np.median(pts, axis=0)
    dist = np.linalg.norm(pts - median, axis=2).mean(axis=1)
    mad = 1.4826 * float(np.median(np.abs(dist - np.median(dist))))
    limit = max(cfg.outlier_px, float(np.median(dist)) + 3 * mad)
    inliers = [i for i, d in zip(ok, dist) if d <= limit]
    for i, d in zip(ok, dist):
        if d > limit:
            reasons[i] = "outlier"
    if len(inliers) < cfg.min_frames:
        raise InsufficientStructureError(
            f"the {len(ok)} frames with structure disagree (only {len(inliers)} within {limit:.1f} px of the median); "
            "the scenes are ambiguous for registration: record more varied scenes or use --target checkerboard")
    sel = np.array([ok.index(i) for i in inliers])
    weight = np.stack([estimates[i].support.ravel() for i in inliers]) + 1e-4    # (F, G); floor: no point unweighted
    mean = (pts[sel] * weight[..., None]).sum(0) / weight.sum(0)[:, None]
    h = fit_model(grid, mean, cfg.model, weights=weight.sum(0))
    return h, reasons


def estimate_homography(pairs: Iterable[tuple[np.ndarray, np.ndarray]], cfg: EstimateConfig = EstimateConfig(),
                        initial: np.ndarray | None = None, progress=None) -> CalibrationResult:
    """Estimate the thermal->RGB transform from many (thermal, rgb) frame pairs of one rig.

    Each frame is registered (:func:`estimate_frame`), the frames are combined (:func:`combine_estimates`), and
    ``cfg.refine_passes`` times every frame is refined from the combined estimate and the frames combined again.

    Args:
        pairs: iterable of (thermal, rgb) as accepted by :func:`estimate_frame`; every RGB frame the same size.
        cfg: estimate settings.
        initial: (3, 3) starting homography; None = identity.
        progress: optional callable run after each frame of each pass, ``1 + cfg.refine_passes`` times per frame
            (e.g. a tqdm bar's ``update``).

    Returns:
        :class:`CalibrationResult`.

    Raises:
        InsufficientStructureError: too few frames usable (including no frame at all).
        ShapeError: RGB frames of different sizes.
    """
    estimates, kept, size = [], [], None
    for thermal, rgb in pairs:
        s = (rgb.shape[1], rgb.shape[0])
        if size is not None and s != size:
            raise ShapeError(f"RGB frames change size ({size[0]}x{size[1]} then {s[0]}x{s[1]}); "
                             "one calibration needs frames of one rig at one resolution")
        size = s
        pair = _FramePair.of(thermal, rgb, cfg.work_width)
        estimates.append(_estimate_frame(pair, cfg, initial))
        kept.append(pair if cfg.refine_passes else None)
        if progress is not None:
            progress()
    if size is None:
        raise InsufficientStructureError("no frame pairs to calibrate from")
    h, reasons = combine_estimates(estimates, size, cfg)
    for _ in range(cfg.refine_passes):
        estimates = _restarted_from(h, estimates, kept, size, cfg, progress)
        h, reasons = combine_estimates(estimates, size, cfg)
    return CalibrationResult(h, cfg.model, estimates, [not r for r in reasons], reasons, size)


# A frame whose estimate lies this close to the combined one (corner_error, px) is not restarted.
_AGREE_PX = 0.5


def _restarted_from(h: np.ndarray, estimates: list[FrameEstimate], kept: list[_FramePair], size: tuple[int, int],
                    cfg: EstimateConfig, progress=None) -> list[FrameEstimate]:
    """Every frame not within ``_AGREE_PX`` of ``h`` refined again from ``h``; the better fit of the two kept."""
    out = []
    for e, pair in zip(estimates, kept):
        out.append(_better(e, _restart(pair, h, cfg)) if corner_error(e.homography, h, size) > _AGREE_PX else e)
        if progress is not None:
            progress()
    return out


def _better(a: FrameEstimate, b: FrameEstimate) -> FrameEstimate:
    """The estimate whose edge maps correlate more at the finest level (``a`` on a tie or when ``b`` failed)."""
    return b if math.isfinite(b.correlation) and not b.correlation <= a.correlation else a


# -- residual -------------------------------------------------------------------------------------------------

@dataclass
class WorkingPair:
    """One frame pair at a working width, the thermal image registered as the node does (see :func:`working_pair`).

    Attributes:
        thermal: (h, w) float32 grey thermal image, warped by the homography onto the working grid.
        rgb: (h, w) float32 grey RGB image, scaled down to the working grid.
        scale: working pixels per RGB pixel (<= 1).
        matrix: (3, 3) thermal pixels -> working pixels (resize to RGB, homography, scale down).
        thermal_shape: (rows, cols) of the thermal image as given.
    """

    thermal: np.ndarray
    rgb: np.ndarray
    scale: float
    matrix: np.ndarray
    thermal_shape: tuple[int, int]


def working_pair(thermal: np.ndarray, rgb: np.ndarray, homography: np.ndarray | Sequence[float], width: int,
                 border: int = cv2.BORDER_CONSTANT) -> WorkingPair:
    """Both images as greys at ``width`` (no wider than the RGB image), the thermal one warped by ``homography``
    (the node's convention) with ``border`` outside it; for the quick checks that run on live frames."""
    g_rgb = to_gray(rgb)
    h_rgb, w_rgb = g_rgb.shape
    k = min(1.0, width / w_rgb)
    lw, lh = max(32, round(w_rgb * k)), max(24, round(h_rgb * k))
    g_th = to_gray(thermal)
    th_h, th_w = g_th.shape
    m = _scale(lw / w_rgb, lh / h_rgb) @ np.asarray(homography, np.float64).reshape(3, 3) @ \
        _scale(w_rgb / th_w, h_rgb / th_h)
    warped = cv2.warpPerspective(g_th, m, (lw, lh), flags=cv2.INTER_LINEAR, borderMode=border)
    return WorkingPair(warped, cv2.resize(g_rgb, (lw, lh), interpolation=cv2.INTER_AREA), k, m, (th_h, th_w))


_RESIDUAL_WIDTH = 320     # residual measured at this width: 4x fewer pixels than 640x480, still sub-pixel
_RESIDUAL_TILES = (4, 3)  # columns x rows of tiles, so a rotation or scale error shows as differing shifts
_RESIDUAL_MIN_PEAK = 0.08  # phase-correlation response below which a tile has nothing to match


def estimate_residual(thermal: np.ndarray, rgb: np.ndarray, homography: np.ndarray | Sequence[float]) -> float:
    """Residual misregistration of ``homography`` on one frame pair, in RGB pixels (fast; for live health).

    The thermal frame is warped by the homography onto the RGB grid (as the node does) at a width of 320 px,
    both images become edge maps, and each of 4 x 3 tiles is phase-correlated; the result is the median shift
    length over the tiles that found a clear peak, scaled back to RGB pixels. A pure shift of d pixels reads d;
    a rotation or scale error reads its typical displacement over the image. About 6 ms for a 640x480 pair on one
    idle CPU core (cv2 single-threaded), one warp and twelve small FFTs.

    Args:
        thermal: (h, w) float32 in [0, 1] (AGC output), uint8, or uint16; any size (resized to the RGB size).
        rgb: (H, W, 3) uint8 RGB or (H, W) grey.
        homography: (3, 3) or 9 row-major values, the node's ``homography`` convention.

    Returns:
        Residual in RGB pixels (>= 0), or NaN when fewer than 3 tiles carry structure in both images.

    Raises:
        ShapeError: an image of the wrong shape or dtype, or a homography without 9 values.
    """
    m = np.asarray(homography, np.float64)
    if m.size != 9:
        raise ShapeError(f"homography needs 9 values (row-major 3x3), got {m.size}")
    work = working_pair(thermal, rgb, m, _RESIDUAL_WIDTH)
    warped, k = work.thermal, work.scale
    lh, lw = warped.shape
    valid = cv2.warpPerspective(np.ones(work.thermal_shape, np.float32), work.matrix, (lw, lh),
                                flags=cv2.INTER_NEAREST)
    e_rgb = edge_map(work.rgb, window=4.0)
    e_th = edge_map(warped, window=4.0)
    cols, rows = _RESIDUAL_TILES
    tw, th = lw // cols, lh // rows
    window = cv2.createHanningWindow((tw, th), cv2.CV_64F)
    shifts = []
    for r in range(rows):
        for c in range(cols):
            sl = (slice(r * th, (r + 1) * th), slice(c * tw, (c + 1) * tw))
            if valid[sl].mean() < 0.9:
                continue
            a, b = e_th[sl].astype(np.float64), e_rgb[sl].astype(np.float64)
            if a.std() < 1e-3 or b.std() < 1e-3:
                continue
            (dx, dy), peak = cv2.phaseCorrelate(a, b, window)
            if peak >= _RESIDUAL_MIN_PEAK:
                shifts.append(math.hypot(dx, dy))
    if len(shifts) < 3:
        return float("nan")
    return float(np.median(shifts)) / k


# -- heated target --------------------------------------------------------------------------------------------

@dataclass
class BoardDetection:
    """Checkerboard corners of one frame pair (RGB pixels; thermal resized to the RGB size), None where not found."""

    rgb: np.ndarray | None
    thermal: np.ndarray | None


def find_board(gray: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """Inner corners of a checkerboard, either polarity, sub-pixel refined.

    Args:
        gray: (H, W) float32 in [0, 1].
        board: (columns, rows) of inner corners.

    Returns:
        (columns * rows, 2) float64 corners in OpenCV's order, or None when the board is not found.
    """
    img = np.clip(gray * 255 + 0.5, 0, 255).astype(np.uint8)
    for candidate in (img, 255 - img):     # a heated board can be bright-on-dark or dark-on-bright
        found, corners = cv2.findChessboardCornersSB(candidate, board, cv2.CALIB_CB_NORMALIZE_IMAGE)
        if found:
            return corners.reshape(-1, 2).astype(np.float64)
    return None


def _canonical(corners: np.ndarray, board: tuple[int, int]) -> np.ndarray:
    """Corners ordered from the top-left, so the two cameras' detections correspond point to point."""
    cols, rows = board
    grid = corners.reshape(rows, cols, 2)
    if grid[0, 0].sum() > grid[-1, -1].sum():     # detected from the far corner: reverse both axes
        grid = grid[::-1, ::-1]
    if cols != rows and grid[0, 0, 0] > grid[0, -1, 0]:
        grid = grid[:, ::-1]
    return grid.reshape(-1, 2)


def estimate_homography_checkerboard(pairs: Iterable[tuple[np.ndarray, np.ndarray]], board: tuple[int, int],
                                     model: str = "homography", progress=None,
                                     ) -> tuple[np.ndarray, list[BoardDetection], list[str], tuple[int, int]]:
    """Fit the thermal->RGB transform to checkerboard corners seen by both cameras (a heated target).

    Args:
        pairs: iterable of (thermal, rgb) as accepted by :func:`estimate_frame`.
        board: (columns, rows) of inner corners.
        model: one of :data:`MODELS`.
        progress: optional callable run after each frame.

    Returns:
        ((3, 3) homography, per-frame detections, per frame "" when used else the reason, RGB (width, height)).

    Raises:
        InsufficientStructureError: the board was not found in both images of any frame.
        ShapeError: RGB frames of different sizes.
    """
    if model not in MODELS:
        raise ConfigError(f"model '{model}' unknown; use one of {', '.join(MODELS)}")
    detections, reasons, size = [], [], None
    for thermal, rgb in pairs:
        g_rgb = to_gray(rgb)
        s = (g_rgb.shape[1], g_rgb.shape[0])
        if size is not None and s != size:
            raise ShapeError(f"RGB frames change size ({size[0]}x{size[1]} then {s[0]}x{s[1]}); "
                             "one calibration needs frames of one rig at one resolution")
        size = s
        g_th = cv2.resize(to_gray(thermal), s, interpolation=cv2.INTER_CUBIC)
        c_rgb, c_th = find_board(g_rgb, board), find_board(g_th, board)
        det = BoardDetection(None if c_rgb is None else _canonical(c_rgb, board),
                             None if c_th is None else _canonical(c_th, board))
        detections.append(det)
        reasons.append("" if c_rgb is not None and c_th is not None else
                       "board not in " + ("either image" if c_rgb is None and c_th is None else
                                          "the RGB image" if c_rgb is None else "the thermal image"))
        if progress is not None:
            progress()
    used = [d for d, r in zip(detections, reasons) if not r]
    if not used:
        raise InsufficientStructureError(
            f"the {board[0]}x{board[1]} checkerboard (inner corners) was found in both images of none of the "
            f"{len(detections)} frames; check --board (inner corners, COLSxROWS), warm the target more, "
            "or calibrate from scenes (leave out --target)")
    src = np.concatenate([d.thermal for d in used])
    dst = np.concatenate([d.rgb for d in used])
    h = fit_model(src, dst, model)
    # One RANSAC-like pass: refit without corners that a wrong detection put far off.
    err = np.linalg.norm(_apply(h, src) - dst, axis=1)
    keep = err <= max(3.0, 3 * float(np.median(err)))
    if keep.sum() >= 4 and not keep.all():
        h = fit_model(src[keep], dst[keep], model)
    return h, detections, reasons, size


def board_error(h: np.ndarray, det: BoardDetection) -> float:
    """RMS distance, RGB pixels, between the RGB corners and the thermal corners mapped by ``h`` (NaN: no board)."""
    if det.rgb is None or det.thermal is None:
        return float("nan")
    return float(np.sqrt(np.mean(np.sum((_apply(h, det.thermal) - det.rgb) ** 2, axis=1))))
