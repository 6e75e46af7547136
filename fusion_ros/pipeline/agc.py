"""Thermal automatic gain control: raw counts -> float32 in [0, 1] without flicker (ROS-free).

16-bit radiometric counts are mapped linearly between a low and a high level. The levels come either from
robust percentiles of the current frame, smoothed over time with an exponential moving average (EMA) so
that a hot object entering the view does not make the whole picture pump, or from a fixed range.
8-bit thermal (mono8 / 8UC1, and the 8-bit dataset images the student is trained on) is passed through as
``x / 255`` — the training convention.

Example:
    >>> import numpy as np
    >>> agc = ThermalAGC(AGCConfig())
    >>> round(float(agc(np.full((4, 4), 128, np.uint8)).max()), 4)
    0.502
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from fusion_ros.errors import ConfigError, ShapeError

__all__ = ["AGCConfig", "AGCState", "ThermalAGC", "thermal_agc"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AGCConfig:
    """Thermal AGC settings."""

    # Fixed linear range (low, high) in raw counts; (0, 0) = automatic (percentiles). high > low.
    thermal_range: tuple[float, float] = field(default=(0.0, 0.0), metadata={
        "doc": "fixed linear range [low, high] in raw 16-bit counts; [0, 0] = automatic percentile AGC"})
    # Lower percentile mapped to 0, in [0, 50).
    agc_low_percentile: float = field(default=1.0, metadata={
        "doc": "automatic AGC: percentile of the thermal frame mapped to 0", "range": (0.0, 50.0)})
    # Upper percentile mapped to 1, in (50, 100].
    agc_high_percentile: float = field(default=99.0, metadata={
        "doc": "automatic AGC: percentile of the thermal frame mapped to 1", "range": (50.0, 100.0)})
    # EMA weight of the current frame's levels, in (0, 1]; 1 = no smoothing.
    agc_smoothing: float = field(default=0.1, metadata={
        "doc": "automatic AGC: EMA weight of the current frame's levels (1 = no temporal smoothing)",
        "range": (0.001, 1.0)})
    # Smallest high-low span in counts, > 0; keeps a uniform frame from amplifying noise.
    agc_min_span: float = field(default=64.0, metadata={
        "doc": "automatic AGC: smallest high-low span in counts (limits gain on a uniform scene)",
        "range": (1.0, 65535.0)})

    def __post_init__(self) -> None:
        lo, hi = self.thermal_range if len(self.thermal_range) == 2 else (None, None)
        if lo is None:
            raise ConfigError(f"thermal_range must be [low, high], got {list(self.thermal_range)}")
        if (lo, hi) != (0.0, 0.0) and not hi > lo:
            raise ConfigError(f"thermal_range [{lo}, {hi}] needs high > low; use [0, 0] for automatic AGC")
        if not 0.0 <= self.agc_low_percentile < 50.0:
            raise ConfigError(f"agc_low_percentile={self.agc_low_percentile} must be in [0, 50)")
        if not 50.0 < self.agc_high_percentile <= 100.0:
            raise ConfigError(f"agc_high_percentile={self.agc_high_percentile} must be in (50, 100]")
        if not 0.0 < self.agc_smoothing <= 1.0:
            raise ConfigError(f"agc_smoothing={self.agc_smoothing} must be in (0, 1]; 1 disables smoothing")
        if not self.agc_min_span > 0:
            raise ConfigError(f"agc_min_span={self.agc_min_span} must be > 0")

    @property
    def fixed(self) -> bool:
        return tuple(self.thermal_range) != (0.0, 0.0)


@dataclass
class AGCState:
    """Smoothed levels carried between frames; ``None`` until the first 16-bit frame."""

    low: float | None = None
    high: float | None = None


# Percentiles are estimated on a strided subsample: ~1/16 of the pixels gives the same levels to within a
# count or two on real scenes and keeps the AGC well under a millisecond at 640x512.
_SUBSAMPLE = 4


def thermal_agc(thermal: np.ndarray, state: AGCState, cfg: AGCConfig) -> tuple[np.ndarray, AGCState]:
    """Normalise one thermal frame to [0, 1].

    Args:
        thermal: (H, W) uint8 (passed through as x/255), uint16 counts, or float32 already in [0, 1].
        state: levels from the previous frame (updated copy returned).
        cfg: AGC settings.

    Returns:
        ((H, W) float32 in [0, 1], new state).

    Raises:
        ShapeError: ``thermal`` is not 2-D or has an unsupported dtype.
    """
    if thermal.ndim != 2:
        raise ShapeError(f"thermal must be (H, W), got shape {thermal.shape}")
    if thermal.dtype == np.uint8:
        return thermal.astype(np.float32) * np.float32(1.0 / 255.0), state
    if thermal.dtype.kind == "f":
        return np.clip(thermal, 0.0, 1.0).astype(np.float32, copy=False), state
    if thermal.dtype.kind not in "ui":
        raise ShapeError(f"thermal dtype {thermal.dtype} unsupported; expected uint8, uint16 or float32")
    if cfg.fixed:
        low, high = float(cfg.thermal_range[0]), float(cfg.thermal_range[1])
        new = state
    else:
        sample = thermal[::_SUBSAMPLE, ::_SUBSAMPLE]
        lo_f, hi_f = np.percentile(sample, (cfg.agc_low_percentile, cfg.agc_high_percentile))
        if state.low is None:
            low, high = float(lo_f), float(hi_f)
        else:
            a = cfg.agc_smoothing
            low = (1 - a) * state.low + a * float(lo_f)
            high = (1 - a) * state.high + a * float(hi_f)
        new = AGCState(low, high)
        if high - low < cfg.agc_min_span:
            mid = 0.5 * (high + low)
            low, high = mid - cfg.agc_min_span / 2, mid + cfg.agc_min_span / 2
    scale = np.float32(1.0 / (high - low))
    out = (thermal.astype(np.float32) - np.float32(low)) * scale
    np.clip(out, 0.0, 1.0, out=out)
    return out, new


class ThermalAGC:
    """Stateful wrapper of :func:`thermal_agc` (module API).

    Args:
        cfg: AGC settings.
    """

    def __init__(self, cfg: AGCConfig = AGCConfig()) -> None:
        self.cfg = cfg
        self.state = AGCState()

    def __call__(self, thermal: np.ndarray) -> np.ndarray:
        """Normalise ``thermal`` (H, W) -> (H, W) float32 in [0, 1] and update the smoothed levels."""
        out, self.state = thermal_agc(thermal, self.state, self.cfg)
        return out

    def reset(self) -> None:
        """Forget the smoothed levels (the next frame sets them directly)."""
        self.state = AGCState()

    def __repr__(self) -> str:
        return f"ThermalAGC(cfg={self.cfg}, state={self.state})"
