"""The fusion pipeline between decoded arrays: AGC -> registration (+ automatic shift) -> (resize) -> engine ->
(resize back).

The ROS node, ``fusion-ros fuse``, ``bag fuse``, the demo and training's readers all call :class:`Fuser`, so a
frame is fused the same way wherever it comes from.

Example:
    >>> import numpy as np
    >>> class Blend:  # any backend with infer()/reset_memory()
    ...     def infer(self, t, v, use_memory=True): return 0.5 * t + 0.5 * v
    ...     def reset_memory(self): pass
    >>> fuser = Fuser(Blend())
    >>> fuser.step(np.zeros((256, 320), np.uint16), np.zeros((480, 640, 3), np.uint8), stamp=0.0).shape
    (480, 640, 3)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.pipeline.agc import AGCConfig, ThermalAGC
from fusion_ros.pipeline.auto_align import AutoAligner, shifted_homography
from fusion_ros.pipeline.registration import RegistrationConfig, warp_thermal

__all__ = ["Backend", "FuserConfig", "Fuser", "FuserTimings", "PreparedPair"]

log = logging.getLogger(__name__)


class Backend(Protocol):
    """What the pipeline needs from an engine backend (``fusion_ros.engine.create_backend``)."""

    def infer(self, thermal: np.ndarray, visible: np.ndarray, use_memory: bool = True) -> np.ndarray: ...

    def reset_memory(self) -> None: ...


_AGC = AGCConfig()
_REG = RegistrationConfig()


@dataclass(frozen=True)
class FuserConfig:
    """Pipeline settings (flat, so that ROS parameters, YAML and ``--set`` map onto fields one to one)."""

    # Carry the streaming memory between frames (video); False = every frame fused independently.
    use_memory: bool = field(default=True, metadata={
        "doc": "carry the network's streaming memory from frame to frame"})
    # Stamp gap that resets the memory, seconds, > 0 (a scene cut, a paused bag, a sensor outage).
    memory_reset_gap_s: float = field(default=0.5, metadata={
        "doc": "a stamp gap longer than this (or a backwards jump) resets the streaming memory, s",
        "range": (0.001, 3600.0)})
    # (width, height) the network runs at; (0, 0) = the RGB size. Output is resized back to the RGB size.
    inference_size: tuple[int, int] = field(default=(0, 0), metadata={
        "doc": "[width, height] the network runs at, resized back to the RGB size; [0, 0] = RGB size"})
    thermal_range: tuple[float, float] = field(default=_AGC.thermal_range,
                                               metadata=AGCConfig.__dataclass_fields__["thermal_range"].metadata)
    agc_low_percentile: float = field(default=_AGC.agc_low_percentile,
                                      metadata=AGCConfig.__dataclass_fields__["agc_low_percentile"].metadata)
    agc_high_percentile: float = field(default=_AGC.agc_high_percentile,
                                       metadata=AGCConfig.__dataclass_fields__["agc_high_percentile"].metadata)
    agc_smoothing: float = field(default=_AGC.agc_smoothing,
                                 metadata=AGCConfig.__dataclass_fields__["agc_smoothing"].metadata)
    agc_min_span: float = field(default=_AGC.agc_min_span,
                                metadata=AGCConfig.__dataclass_fields__["agc_min_span"].metadata)
    homography: tuple[float, ...] = field(default=_REG.homography,
                                          metadata=RegistrationConfig.__dataclass_fields__["homography"].metadata)
    # A calibration a few pixels off doubles every edge; the automatic shift undoes a residual translation, and
    # only where the edges say so clearly (pipeline/auto_align.py).
    auto_align: bool = field(default=True, metadata={
        "doc": "move the registered thermal image by the shift that lines its edges up with the RGB edges, when that "
               "shift matches clearly better than the homography alone (auto_align_shift_px in /diagnostics)"})
    auto_align_max_px: float = field(default=24.0, metadata={
        "doc": "largest shift the automatic alignment searches along each axis, RGB px", "range": (1.0, 128.0)})
    auto_align_min_gain: float = field(default=0.35, metadata={
        "doc": "the best shift is used when no shift lacks at least this share of its edge correlation; higher = "
               "trust the homography more", "range": (0.0, 1.0)})
    auto_align_every: int = field(default=30, metadata={
        "doc": "frames between two automatic-alignment estimates on a stream (the shift used is the median of the "
               "last 5; the first frame after a reset is estimated at once)", "range": (1, 100000)})

    def __post_init__(self) -> None:
        if not self.memory_reset_gap_s > 0:
            raise ConfigError(f"memory_reset_gap_s={self.memory_reset_gap_s} must be > 0 seconds")
        size = tuple(self.inference_size)
        if len(size) != 2 or any(int(v) != v or v < 0 for v in size) or (0 in size and size != (0, 0)):
            raise ConfigError(f"inference_size={list(size)} must be [width, height] of positive integers, "
                              "or [0, 0] for the RGB size")
        if not 1.0 <= self.auto_align_max_px <= 128.0:
            raise ConfigError(f"auto_align_max_px={self.auto_align_max_px} must be within [1, 128] pixels")
        if not 0.0 <= self.auto_align_min_gain <= 1.0:
            raise ConfigError(f"auto_align_min_gain={self.auto_align_min_gain} must be within [0, 1]")
        if int(self.auto_align_every) != self.auto_align_every or self.auto_align_every < 1:
            raise ConfigError(f"auto_align_every={self.auto_align_every} must be an integer >= 1 (frames)")
        # Validate the sub-configs now so a bad value fails where it was set.
        self.agc
        self.registration

    @property
    def agc(self) -> AGCConfig:
        return AGCConfig(thermal_range=tuple(self.thermal_range), agc_low_percentile=self.agc_low_percentile,
                         agc_high_percentile=self.agc_high_percentile, agc_smoothing=self.agc_smoothing,
                         agc_min_span=self.agc_min_span)

    @property
    def registration(self) -> RegistrationConfig:
        return RegistrationConfig(homography=tuple(float(v) for v in self.homography))


@dataclass
class FuserTimings:
    """Wall time of the last :meth:`Fuser.step`, milliseconds, split into pipeline overhead and inference."""

    agc_ms: float = 0.0
    register_ms: float = 0.0    # includes align_ms
    align_ms: float = 0.0       # the automatic-shift estimate (0 on the frames without one)
    prepare_ms: float = 0.0     # RGB -> float CHW, resize to the inference size
    infer_ms: float = 0.0
    finish_ms: float = 0.0      # float CHW -> uint8 HWC, resize back

    @property
    def overhead_ms(self) -> float:
        return self.agc_ms + self.register_ms + self.prepare_ms + self.finish_ms


@dataclass
class PreparedPair:
    """One pair ready for the network (:meth:`Fuser.prepare`): its inputs, its RGB size, and whether the streaming
    memory restarts before it."""

    thermal: np.ndarray             # (1, 1, h, w) float32 in [0, 1], on the inference grid
    visible: np.ndarray             # (1, 3, h, w) float32 RGB in [0, 1]
    out_size: tuple[int, int]       # (width, height) of the RGB image the output is resized back to
    reset_memory: bool
    timings: FuserTimings


class Fuser:
    """Stateful frame fuser.

    Args:
        backend: engine backend: ``infer(thermal (1,1,H,W) f32 [0,1], visible (1,3,H,W) f32 RGB [0,1],
            use_memory) -> (1,3,H,W) f32 RGB [0,1]`` and ``reset_memory()``.
        cfg: pipeline settings.
    """

    def __init__(self, backend: Backend, cfg: FuserConfig = FuserConfig()) -> None:
        self.backend = backend
        self.cfg = cfg
        self.agc = ThermalAGC(cfg.agc)
        self._reg = cfg.registration
        self.aligner = self._aligner(cfg)
        self._shifted: tuple[tuple, RegistrationConfig] | None = None
        self._last_stamp: float | None = None
        self._last_size: tuple[int, int] | None = None
        self.memory_resets = 0
        self._memory_reset_pending = False
        self.timings = FuserTimings()       # of the last finished pair

    def configure(self, cfg: FuserConfig) -> None:
        """Apply new settings (live); AGC levels are kept, the memory is reset if the inference size changed."""
        if tuple(cfg.inference_size) != tuple(self.cfg.inference_size) or cfg.use_memory != self.cfg.use_memory:
            self._ask_memory_reset("configuration change")
        old = self.cfg
        self.cfg = cfg
        self.agc.cfg = cfg.agc
        self._reg = cfg.registration
        if _aligner_settings(cfg) != _aligner_settings(old):
            self.aligner = self._aligner(cfg)

    @staticmethod
    def _aligner(cfg: FuserConfig) -> AutoAligner | None:
        if not cfg.auto_align:
            return None
        return AutoAligner(cfg.auto_align_max_px, cfg.auto_align_min_gain, int(cfg.auto_align_every))

    @property
    def shift_px(self) -> tuple[float, float]:
        """The automatic shift in use, RGB px (thermal content moved left/up by it); (0, 0) when off."""
        aligner = self.aligner
        return aligner.shift if aligner is not None else (0.0, 0.0)

    @property
    def effective_homography(self) -> tuple[float, ...]:
        """The registration frames are fused with: the homography followed by the automatic shift."""
        shift = self.shift_px
        return tuple(self.cfg.homography) if shift == (0.0, 0.0) else self._shifted_registration(shift).homography

    def _shifted_registration(self, shift: tuple[float, float]) -> RegistrationConfig:
        # The shift changes at most once per estimate: build (and validate) its registration once, not per frame.
        key = (shift, tuple(self.cfg.homography))
        if self._shifted is None or self._shifted[0] != key:
            self._shifted = (key, RegistrationConfig(homography=shifted_homography(self.cfg.homography, shift)))
        return self._shifted[1]

    def reset(self) -> None:
        """Reset the streaming memory, the AGC levels and the automatic shift (e.g. on a new sequence)."""
        self._ask_memory_reset("reset()")
        self.agc.reset()
        if self.aligner is not None:
            self.aligner.reset()
        self._last_stamp = None

    def _ask_memory_reset(self, why: str) -> None:
        # Applied by the next infer(), on the thread that owns the memory: a pipelined caller prepares the next
        # pair while the previous one is still being inferred.
        self._memory_reset_pending = True
        log.debug("streaming memory reset: %s", why)

    def prepare_thermal(self, thermal: np.ndarray, rgb: np.ndarray,
                        timings: FuserTimings | None = None) -> np.ndarray:
        """AGC + registration (and the automatic shift, which looks at ``rgb``): (h, w) thermal -> (H_inf, W_inf)
        float32 in [0, 1] on the inference grid."""
        timings = FuserTimings() if timings is None else timings
        t0 = time.perf_counter()
        th = self.agc(thermal)
        t1 = time.perf_counter()
        rgb_size = (rgb.shape[1], rgb.shape[0])
        reg, replicate = self._reg, False
        aligner = self.aligner          # one read: configure() may swap it from another thread
        if aligner is not None:
            t_align, before = time.perf_counter(), aligner.estimates
            shift = aligner.update(th, rgb, self.cfg.homography)
            if aligner.estimates != before:
                timings.align_ms = (time.perf_counter() - t_align) * 1e3
            if shift != (0.0, 0.0):
                # Co-aligned cameras moved by a few pixels: the strip uncovered at the border is filled from its
                # neighbours (a black strip would be fused as an edge); a wider homography keeps its black outside.
                replicate = self._reg.is_identity
                reg = self._shifted_registration(shift)
        th = warp_thermal(th, self.inference_size(rgb_size), reg, ref_size=rgb_size, replicate_border=replicate)
        timings.agc_ms = (t1 - t0) * 1e3
        timings.register_ms = (time.perf_counter() - t1) * 1e3
        return th

    def network_inputs(self, thermal: np.ndarray, rgb: np.ndarray,
                       timings: FuserTimings | None = None) -> tuple[np.ndarray, np.ndarray]:
        """What the network gets for one pair: thermal (1, 1, H, W) and visible (1, 3, H, W) float32 in [0, 1] on
        the inference grid (AGC, registration, resize); updates the AGC levels as fusing the pair does."""
        timings = FuserTimings() if timings is None else timings
        h, w = rgb.shape[:2]
        th = self.prepare_thermal(thermal, rgb, timings)
        t0 = time.perf_counter()
        inf_w, inf_h = self.inference_size((w, h))
        vis = rgb if (inf_w, inf_h) == (w, h) else cv2.resize(np.ascontiguousarray(rgb), (inf_w, inf_h),
                                                              interpolation=cv2.INTER_AREA)
        visible = to_chw(vis)
        timings.prepare_ms = (time.perf_counter() - t0) * 1e3
        return th.reshape(1, 1, inf_h, inf_w), visible

    def inference_size(self, rgb_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) the network runs at for an RGB image of ``rgb_size`` (width, height)."""
        return rgb_size if tuple(self.cfg.inference_size) == (0, 0) else tuple(int(v) for v in self.cfg.inference_size)

    def step(self, thermal: np.ndarray, rgb: np.ndarray, stamp: float | None = None) -> np.ndarray:
        """Fuse one registered-or-not thermal frame with one RGB frame (:meth:`prepare`, :meth:`infer`,
        :meth:`finish` in one call).

        Args:
            thermal: (h, w) uint8 (x/255), uint16 (AGC) or float32 in [0, 1], any size.
            rgb: (H, W, 3) uint8 RGB (views with negative/odd strides are fine).
            stamp: frame time in seconds, for the memory-reset-on-gap rule; None = no gap check.

        Returns:
            (H, W, 3) uint8 RGB, same size as ``rgb``.

        Raises:
            ShapeError: wrong array ranks/channels.
        """
        pair = self.prepare(thermal, rgb, stamp)
        return self.finish(self.infer(pair), pair)

    def prepare(self, thermal: np.ndarray, rgb: np.ndarray, stamp: float | None = None) -> PreparedPair:
        """AGC, registration and conversion of one pair, and whether the memory must restart before it (a stamp
        gap, a backwards stamp, a resolution change, :meth:`reset`). Call in frame order; it touches no engine
        state, so it may run while the previous pair is in :meth:`infer`."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ShapeError(f"rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = rgb.shape[:2]
        if self._last_size is not None and self._last_size != (w, h):
            self._ask_memory_reset(f"resolution change {self._last_size} -> {(w, h)}")
        elif stamp is not None and self._last_stamp is not None:
            gap = stamp - self._last_stamp
            if gap > self.cfg.memory_reset_gap_s or gap < 0:
                self._ask_memory_reset(f"stamp gap {gap:.3f} s")
        self._last_size = (w, h)
        if stamp is not None:
            self._last_stamp = stamp
        timings = FuserTimings()
        thermal_t, visible = self.network_inputs(thermal, rgb, timings)
        reset, self._memory_reset_pending = self._memory_reset_pending, False
        return PreparedPair(thermal_t, visible, (w, h), reset, timings)

    def infer(self, pair: PreparedPair) -> np.ndarray:
        """Run the network on a prepared pair (in frame order: the streaming memory lives here)."""
        if pair.reset_memory:
            self.backend.reset_memory()
            self.memory_resets += 1
        t0 = time.perf_counter()
        out = self.backend.infer(pair.thermal, pair.visible, use_memory=self.cfg.use_memory)
        pair.timings.infer_ms = (time.perf_counter() - t0) * 1e3
        return out

    def finish(self, out: Any, pair: PreparedPair) -> np.ndarray:
        """The network's output -> (H, W, 3) uint8 RGB at the RGB size of ``pair``."""
        t0 = time.perf_counter()
        fused = from_chw(np.asarray(out))
        if fused.shape[1::-1] != pair.out_size:
            fused = cv2.resize(fused, pair.out_size, interpolation=cv2.INTER_LINEAR)
        pair.timings.finish_ms = (time.perf_counter() - t0) * 1e3
        self.timings = pair.timings
        return fused

    def __repr__(self) -> str:
        return f"Fuser(backend={getattr(self.backend, 'name', type(self.backend).__name__)}, cfg={self.cfg})"


def _aligner_settings(cfg: FuserConfig) -> tuple:
    """What the automatic shift depends on: a change of any of these starts it afresh."""
    return (cfg.auto_align, cfg.auto_align_max_px, cfg.auto_align_min_gain, cfg.auto_align_every,
            tuple(cfg.homography))


def to_chw(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB (any strides) -> (1, 3, H, W) float32 in [0, 1], contiguous."""
    h, w = rgb.shape[:2]
    out = np.empty((1, 3, h, w), np.float32)
    for c in range(3):
        # cv2 converts one strided plane at a time faster than a numpy transpose+astype of the whole image.
        cv2.multiply(np.ascontiguousarray(rgb[:, :, c]), 1.0 / 255.0, dst=out[0, c], dtype=cv2.CV_32F)
    return out


def from_chw(x: Any) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB (rounded, saturated)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[:2] != (1, 3):
        raise ShapeError(f"backend output must be (1, 3, H, W), got {x.shape}")
    planes = [cv2.convertScaleAbs(np.maximum(x[0, c], 0.0), alpha=255.0) for c in range(3)]
    return cv2.merge(planes)
