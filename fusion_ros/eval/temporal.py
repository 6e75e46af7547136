"""Temporal stability of a fused video: flicker and warping error after motion compensation.

The motion comes from the *visible* stream (OpenCV DIS optical flow), so every method is warped with
the same flow and only its own temporal changes are measured:

* flicker_t   = mean |F_t - warp(F_{t-1})| / mean |V_t - warp(V_{t-1})| over the valid pixels
  (luma, grey levels). 1.0 means the fused video changes between frames as much as the visible
  input does after motion compensation; higher means the fusion adds flicker.
* warping error_t = mean (F_t - warp(F_{t-1}))^2 over the valid pixels, luma in [0, 1]
  (Lai et al. 2018, "Learning Blind Video Temporal Consistency").

A pixel is valid when the backward flow lands inside the previous frame and passes the
forward-backward consistency check (Sundaram et al. 2010), which removes occlusions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.eval.metrics import to_gray
from fusion_ros.model import flow_consistency

__all__ = ["TemporalConfig", "ClipFlow", "TemporalResult", "compute_flow", "temporal_metrics"]

log = logging.getLogger(__name__)

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass(frozen=True)
class TemporalConfig:
    """How motion is estimated and which pixels count.

    Attributes:
        preset: DIS optical flow preset, one of "ultrafast", "fast", "medium" (slower = more accurate).
        consistency_check: drop pixels whose forward and backward flows disagree (occlusions).
        consistency_alpha: relative tolerance of :func:`fusion_ros.model.flow_consistency.consistent`, unitless,
            > 0 (0.01 in Sundaram et al., as training's temporal loss).
        consistency_beta: absolute tolerance of the check, pixels^2, > 0 (0.5 in Sundaram et al.).
    """

    preset: str = "medium"
    consistency_check: bool = True
    consistency_alpha: float = flow_consistency.ALPHA
    consistency_beta: float = flow_consistency.BETA

    def __post_init__(self) -> None:
        if self.preset not in _PRESETS:
            raise ConfigError(f"preset={self.preset!r} is not a DIS preset; use one of {sorted(_PRESETS)}")
        if not self.consistency_alpha > 0:
            raise ConfigError(f"consistency_alpha={self.consistency_alpha} must be > 0 (e.g. 0.01)")
        if not self.consistency_beta > 0:
            raise ConfigError(f"consistency_beta={self.consistency_beta} must be > 0 (e.g. 0.5)")


@dataclass
class ClipFlow:
    """Backward warps of one clip, reusable for every method evaluated on that clip.

    Attributes:
        maps: per transition t = 1..T-1, (H, W, 2) float32 sampling positions in frame t-1 for each pixel of t.
        valid: per transition, (H, W) bool mask of the pixels that count.
    """

    maps: list[np.ndarray] = field(default_factory=list)
    valid: list[np.ndarray] = field(default_factory=list)

    def warp(self, t: int, prev: np.ndarray) -> np.ndarray:
        """Warp frame t-1 (``prev``, (H, W) float) onto frame t's grid (transition index ``t`` >= 1)."""
        m = self.maps[t - 1]
        return cv2.remap(prev.astype(np.float32), m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


def _gray_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(to_gray(img)), 0, 255).astype(np.uint8)


def compute_flow(vis_frames: Sequence[np.ndarray], cfg: TemporalConfig = TemporalConfig()) -> ClipFlow:
    """Estimate the backward warps of a visible clip.

    Args:
        vis_frames: T >= 2 frames, (H, W, 3) RGB or (H, W) grey, uint8.
        cfg: flow settings.

    Returns:
        A :class:`ClipFlow` with T-1 maps and masks.

    Raises:
        ShapeError: fewer than 2 frames or frames of different sizes.
    """
    if len(vis_frames) < 2:
        raise ShapeError(f"temporal metrics need at least 2 frames, got {len(vis_frames)}")
    grays = [_gray_u8(f) for f in vis_frames]
    h, w = grays[0].shape
    if any(g.shape != (h, w) for g in grays):
        raise ShapeError(f"all frames must share one size, got {sorted({g.shape for g in grays})}")
    dis = cv2.DISOpticalFlow.create(_PRESETS[cfg.preset])
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = ClipFlow()
    for t in range(1, len(grays)):
        bw = dis.calc(grays[t], grays[t - 1], None)  # for each pixel of t: where it was in t-1
        mx, my = gx + bw[..., 0], gy + bw[..., 1]
        valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        if cfg.consistency_check:
            fw = dis.calc(grays[t - 1], grays[t], None)
            fw_at = cv2.remap(fw, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            valid &= flow_consistency.consistent(((bw + fw_at) ** 2).sum(-1), (bw ** 2).sum(-1), (fw_at ** 2).sum(-1),
                                                 cfg.consistency_alpha, cfg.consistency_beta)
        out.maps.append(np.stack([mx, my], -1))
        out.valid.append(valid)
    return out


@dataclass
class TemporalResult:
    """Temporal scores of one fused clip.

    Attributes:
        flicker: mean fused change / mean visible change after warping (ratio, lower is steadier).
        warping_error: mean squared warped difference of the fused luma in [0, 1] (lower is steadier).
        per_frame_flicker: per transition t = 1..T-1 ratio for the plot.
        per_frame_abs: per transition mean |F_t - warp(F_{t-1})|, grey levels.
        per_frame_warp: per transition warping error.
        valid_fraction: mean share of pixels that counted.
    """

    flicker: float
    warping_error: float
    per_frame_flicker: list[float]
    per_frame_abs: list[float]
    per_frame_warp: list[float]
    valid_fraction: float

    def to_dict(self) -> dict:
        return dict(flicker=self.flicker, warping_error=self.warping_error, per_frame_flicker=self.per_frame_flicker,
                    per_frame_abs=self.per_frame_abs, per_frame_warp=self.per_frame_warp,
                    valid_fraction=self.valid_fraction)


def temporal_metrics(fused_frames: Sequence[np.ndarray], vis_frames: Sequence[np.ndarray],
                     flow: ClipFlow | None = None, cfg: TemporalConfig = TemporalConfig()) -> TemporalResult:
    """Flicker and warping error of a fused clip relative to its visible input.

    Args:
        fused_frames: T frames (H, W, 3) RGB or (H, W) uint8.
        vis_frames: the T visible frames of the same clip, same size.
        flow: precomputed :func:`compute_flow` of ``vis_frames`` (computed here when None).
        cfg: flow settings when ``flow`` is None.

    Returns:
        A :class:`TemporalResult`.

    Raises:
        ShapeError: when the clips differ in length or size.
    """
    if len(fused_frames) != len(vis_frames):
        raise ShapeError(f"fused clip has {len(fused_frames)} frames, visible clip {len(vis_frames)}")
    flow = flow or compute_flow(vis_frames, cfg)
    fy = [to_gray(f) for f in fused_frames]
    vy = [to_gray(v) for v in vis_frames]
    if fy[0].shape != vy[0].shape:
        raise ShapeError(f"fused frames {fy[0].shape} and visible frames {vy[0].shape} differ in size")
    num, den, warp_err, ratio, frac = [], [], [], [], []
    for t in range(1, len(fy)):
        m = flow.valid[t - 1]
        frac.append(float(m.mean()))
        if not m.any():
            log.warning("transition %d has no valid pixel after the consistency check; skipped", t)
            continue
        df = fy[t][m] - flow.warp(t, fy[t - 1])[m]
        dv = vy[t][m] - flow.warp(t, vy[t - 1])[m]
        n, d = float(np.abs(df).mean()), float(np.abs(dv).mean())
        num.append(n)
        den.append(d)
        warp_err.append(float(np.mean((df / 255.0) ** 2)))
        ratio.append(n / d if d > 0 else float("nan"))
    if not num:
        raise ShapeError("no transition of the clip had valid pixels; is the visible clip static or empty?")
    d_mean = float(np.mean(den))
    return TemporalResult(
        flicker=float(np.mean(num)) / d_mean if d_mean > 0 else float("nan"),
        warping_error=float(np.mean(warp_err)),
        per_frame_flicker=ratio, per_frame_abs=num, per_frame_warp=warp_err,
        valid_fraction=float(np.mean(frac)))
