"""Automatic correction of a residual thermal shift: the translation that best lines the registered thermal edges up
with the RGB edges, used only where it matches clearly better than the calibration itself (ROS-free).

A calibration that is a few pixels off (a knocked mount, a homography from another rig, a lens refocused) costs
more than any fusion method gains: edges of the thermal image land beside their RGB counterparts and the fused image
shows both. The estimate is cheap (edge maps at 320 px width, one normalised cross-correlation over the shifts
searched, one pass per estimated frame) and guarded: the calibration is kept unless no shift loses at least the share
``auto_align_min_gain`` of the best shift's correlation, so a well-calibrated rig is left as it is.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> import cv2
    >>> rgb = cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32), (0, 0), 3)
    >>> rgb = np.repeat((rgb / rgb.max() * 255).astype(np.uint8)[..., None], 3, 2)
    >>> thermal = np.roll(rgb[..., 0], (6, 6), axis=(0, 1)).astype(np.float32) / 255
    >>> est = estimate_shift(thermal, rgb, (1, 0, 0, 0, 1, 0, 0, 0, 1), max_shift_px=16)
    >>> round(est.dx), round(est.dy)
    (6, 6)
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from fusion_ros.pipeline.registration_estimate import edge_map, working_pair

__all__ = ["ShiftEstimate", "estimate_shift", "AutoAligner", "shifted_homography"]

log = logging.getLogger(__name__)

_WORK_WIDTH = 320       # the shift is estimated at this width: sub-pixel at 640 px, a quarter of the pixels
_MIN_OVERLAP = (32, 24)  # smallest (width, height) of the compared region at the working size
_VOTES = 5              # the applied shift is the median of this many latest estimates
_HYSTERESIS_PX = 0.5    # a new median closer than this to the applied shift does not move it (no creeping)
_MIN_PEAK = 0.1         # a best match correlating less than this is no match (dark frames, text overlays)


@dataclass(frozen=True)
class ShiftEstimate:
    """Translation of the registered thermal image relative to the RGB image, RGB pixels.

    Attributes:
        dx, dy: the thermal content sits this far right and down of where the RGB shows it.
        gain: edge correlation at the best shift minus that at no shift (>= 0).
        peak: edge correlation at the best shift, in [-1, 1].
        relative_gain: ``gain / peak``: the share of the best shift's correlation that no shift lacks.
        at_limit: the best shift lies on the border of the searched range (the truth may lie beyond it).
    """

    dx: float
    dy: float
    gain: float
    peak: float
    at_limit: bool

    @property
    def relative_gain(self) -> float:
        return self.gain / self.peak if self.peak > 0 else 0.0


def _subpixel(values: np.ndarray, i: int) -> float:
    """Peak position of a 1-D correlation profile by a parabola through the peak and its neighbours."""
    if 0 < i < len(values) - 1:
        left, mid, right = float(values[i - 1]), float(values[i]), float(values[i + 1])
        curvature = left - 2.0 * mid + right
        if curvature < 0:
            return i + 0.5 * (left - right) / curvature
    return float(i)


def estimate_shift(thermal: np.ndarray, rgb: np.ndarray, homography: Sequence[float] | np.ndarray,
                   max_shift_px: float = 24.0, work_width: int = _WORK_WIDTH) -> ShiftEstimate | None:
    """The translation between one thermal frame, registered by ``homography``, and its RGB frame.

    Args:
        thermal: (h, w) thermal image: float32 in [0, 1] (the AGC output), uint8 or uint16; any size.
        rgb: (H, W, 3) uint8 RGB or (H, W) grey.
        homography: the registration in use (9 values or 3x3, the node's convention).
        max_shift_px: largest shift searched along each axis, RGB pixels.
        work_width: width the edge maps are compared at (the RGB image is scaled down to it when wider).

    Returns:
        :class:`ShiftEstimate`, or None when the images are too small for the range or one of them is flat.
    """
    work = working_pair(thermal, rgb, homography, work_width, border=cv2.BORDER_REPLICATE)
    k = work.scale
    lh, lw = work.rgb.shape
    r = max(1, math.ceil(max_shift_px * k))
    if lw - 2 * r < _MIN_OVERLAP[0] or lh - 2 * r < _MIN_OVERLAP[1]:
        return None
    e_th = edge_map(work.thermal)
    e_rgb = edge_map(work.rgb)
    template = e_rgb[r:-r, r:-r]
    if template.std() < 1e-4 or e_th.std() < 1e-4:
        return None
    # Entry (y, x) compares the RGB centre with the thermal window displaced by (x - r, y - r) working pixels.
    scores = np.nan_to_num(cv2.matchTemplate(e_th, template, cv2.TM_CCOEFF_NORMED), nan=-1.0)
    _, peak, _, (x, y) = cv2.minMaxLoc(scores)
    fx, fy = _subpixel(scores[y, :], x), _subpixel(scores[:, x], y)
    return ShiftEstimate(dx=(fx - r) / k, dy=(fy - r) / k, gain=float(peak - scores[r, r]), peak=float(peak),
                         at_limit=x in (0, 2 * r) or y in (0, 2 * r))


def shifted_homography(homography: Sequence[float], shift: tuple[float, float]) -> tuple[float, ...]:
    """``homography`` followed by moving the thermal image by ``-shift`` (undoing a thermal offset of ``shift``)."""
    t = np.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]], [0.0, 0.0, 1.0]])
    m = t @ np.asarray(homography, np.float64).reshape(3, 3)
    return tuple(float(v) for v in (m / m[2, 2]).ravel())


class AutoAligner:
    """The shift a stream of frame pairs is corrected by.

    Every ``every`` frames (and on the first frame after :meth:`reset`) one pair is estimated; it votes for its
    shift when no shift lacks at least the share ``min_gain`` of its correlation (and it lies inside the searched
    range, and correlates at least 0.1), and for no shift otherwise. The applied shift is the median of the last 5
    votes, so one odd frame does not move it, and a still (one frame after a reset) gets its own estimate.

    Args:
        max_shift_px: largest shift searched, RGB px.
        min_gain: share of the best shift's edge correlation that no shift must lack (relative gain).
        every: frames between two estimates.
    """

    def __init__(self, max_shift_px: float = 24.0, min_gain: float = 0.35, every: int = 30) -> None:
        self.max_shift_px = max_shift_px
        self.min_gain = min_gain
        self.every = every
        self._votes: collections.deque[tuple[float, float]] = collections.deque(maxlen=_VOTES)
        self._frames = 0
        self.shift: tuple[float, float] = (0.0, 0.0)
        self.estimates = 0
        self.last: ShiftEstimate | None = None

    def reset(self) -> None:
        """Forget the votes and go back to the calibration (a new sequence, a new homography)."""
        self._votes.clear()
        self._frames = 0
        self.shift = (0.0, 0.0)

    def update(self, thermal: np.ndarray, rgb: np.ndarray, homography: Sequence[float]) -> tuple[float, float]:
        """Offer one frame pair (AGC output, RGB) fused with ``homography``; returns the shift to apply to it."""
        due = self._frames % self.every == 0
        self._frames += 1
        if due:
            try:
                est = estimate_shift(thermal, rgb, homography, self.max_shift_px)
            except (cv2.error, ValueError) as exc:    # an odd frame: fused as registered, the estimate skipped
                log.debug("automatic shift estimate failed: %s", exc)
                return self.shift
            self._vote(est)
        return self.shift

    def _vote(self, est: ShiftEstimate | None) -> None:
        self.estimates += 1
        self.last = est
        clear = est is not None and est.peak >= _MIN_PEAK and est.relative_gain >= self.min_gain \
            and not est.at_limit
        self._votes.append((est.dx, est.dy) if clear else (0.0, 0.0))
        median = tuple(float(v) for v in np.median(np.asarray(self._votes), axis=0))
        if len(self._votes) == 1 or math.dist(median, self.shift) > _HYSTERESIS_PX:
            self.shift = median
