"""Live registration health: the residual misregistration of the current homography, estimated now and then on a
thread of its own, so that a drifted rig shows in /diagnostics without delaying a single frame (ROS-free).

Example:
    >>> import numpy as np
    >>> mon = RegistrationMonitor(period_s=1.0)
    >>> mon.offer(np.zeros((64, 80), np.uint8), np.zeros((64, 80, 3), np.uint8), (1, 0, 0, 0, 1, 0, 0, 0, 1), now=0.0)
    >>> mon.stop()
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Sequence

import numpy as np

from fusion_ros.pipeline.registration_estimate import estimate_residual

__all__ = ["RegistrationMonitor"]

log = logging.getLogger(__name__)


class RegistrationMonitor:
    """Takes at most one frame pair every ``period_s`` (the caller offers every fused pair; offering is a reference
    copy) and estimates its residual on a background thread; ``error_px`` is the median of the last ``window``
    estimates (NaN until one pair carried enough structure).

    Args:
        period_s: time between two estimates, s (> 0).
        window: estimates the reported value is the median of.
    """

    def __init__(self, period_s: float = 1.0, window: int = 5) -> None:
        self.period_s = period_s
        self._values: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self._sample = None
        self._last_offer: float | None = None
        self._wake = threading.Event()
        self._stop = False
        self.estimates = 0
        self._thread = threading.Thread(target=self._loop, name="fusion-registration", daemon=True)
        self._thread.start()

    def offer(self, thermal: np.ndarray, rgb: np.ndarray, homography: Sequence[float], now: float) -> None:
        """Hand over a fused pair (raw thermal, RGB) and the homography it was fused with; cheap, never blocks."""
        if self._last_offer is not None and now - self._last_offer < self.period_s:
            return
        self._last_offer = now
        with self._lock:
            self._sample = (thermal, rgb, tuple(homography))
        self._wake.set()

    @property
    def error_px(self) -> float:
        with self._lock:
            return float(np.median(self._values)) if self._values else float("nan")

    def reset(self) -> None:
        """Forget the estimates (the homography changed)."""
        with self._lock:
            self._values.clear()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            with self._lock:
                sample, self._sample = self._sample, None
            if sample is None:
                continue
            try:
                value = estimate_residual(*sample)
            except Exception as exc:        # a health estimate must never take the node down
                log.debug("registration estimate failed: %s", exc)
                continue
            self.estimates += 1
            if value == value:              # NaN: too little structure in this pair
                with self._lock:
                    self._values.append(value)
