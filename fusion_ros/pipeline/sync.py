"""Approximate-time pairing of an RGB stream with a thermal stream (ROS-free).

Semantics follow ``message_filters.ApproximateTimeSynchronizer`` where they matter to users — a ``slop`` (the
largest stamp difference of a pair) and a ``queue_size`` (messages buffered per stream) — but the pairing is
asymmetric, because the output must follow the RGB camera: every RGB frame is paired with the thermal frame
whose stamp is nearest to it, if that one is within ``slop``; a thermal frame may serve several RGB frames
(thermal usually runs slower, e.g. 9 Hz vs 30 Hz). An RGB frame with no thermal within ``slop`` is emitted
with ``thermal=None`` and counted as a pairing drop, so the caller decides what to publish.

When an RGB frame arrives and the newest thermal is older than it, a newer thermal frame could still be
closer. The frame is held only while that is plausible: it is released at once when the next thermal frame,
expected one thermal period (estimated from the stamps) after the newest one, would be farther away than the
current best; otherwise it waits for that thermal frame, at most ``sync_max_wait_s`` of arrival time.

Example:
    >>> s = ApproxTimeSync(SyncConfig(approximate_sync_slop_s=0.05))
    >>> s.add_thermal(1.00, "t0", arrival=1.0)
    []
    >>> [(p.rgb, p.thermal) for p in s.add_rgb(1.01, "r0", arrival=1.0)]
    []
    >>> [(p.rgb, p.thermal) for p in s.add_thermal(1.11, "t1", arrival=1.1)]
    [('r0', 't0')]
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fusion_ros.errors import ConfigError

__all__ = ["SyncConfig", "Pair", "SyncStats", "ApproxTimeSync"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncConfig:
    """Pairing settings."""

    # Largest |t_rgb - t_thermal| of a pair, seconds, > 0. Cover half the thermal period (9 Hz -> >= 0.056).
    approximate_sync_slop_s: float = field(default=0.1, metadata={
        "doc": "largest stamp difference of an RGB/thermal pair, s (cover half the thermal period)",
        "range": (0.001, 10.0)})
    # Messages buffered per stream, >= 1.
    queue_size: int = field(default=10, metadata={
        "doc": "messages buffered per stream for pairing", "range": (1, 1000)})
    # Longest an RGB frame waits (arrival time) for a closer thermal frame, seconds, >= 0.
    sync_max_wait_s: float = field(default=0.1, metadata={
        "doc": "longest an RGB frame is held waiting for a closer thermal frame, s (bounds added latency)",
        "range": (0.0, 10.0)})

    def __post_init__(self) -> None:
        if not self.approximate_sync_slop_s > 0:
            raise ConfigError(f"approximate_sync_slop_s={self.approximate_sync_slop_s} must be > 0 seconds")
        if int(self.queue_size) != self.queue_size or self.queue_size < 1:
            raise ConfigError(f"queue_size={self.queue_size} must be an integer >= 1")
        if not self.sync_max_wait_s >= 0:
            raise ConfigError(f"sync_max_wait_s={self.sync_max_wait_s} must be >= 0 seconds")


@dataclass
class Pair:
    """One output of the synchroniser: an RGB item with its thermal partner (None = none within slop)."""

    rgb_stamp: float
    rgb: Any
    thermal_stamp: float | None
    thermal: Any

    @property
    def offset(self) -> float | None:
        """rgb_stamp - thermal_stamp in seconds, or None when unpaired."""
        return None if self.thermal_stamp is None else self.rgb_stamp - self.thermal_stamp


@dataclass
class SyncStats:
    """Counters since construction (or :meth:`ApproxTimeSync.reset_stats`)."""

    rgb_in: int = 0
    thermal_in: int = 0
    paired: int = 0
    unpaired_rgb: int = 0          # RGB frames with no thermal within slop (pairing drops)
    rgb_overflow: int = 0          # RGB frames released early because the pending queue was full
    thermal_out_of_order: int = 0  # thermal frames older than the newest one (dropped)


@dataclass
class _Pending:
    stamp: float
    item: Any
    arrival: float


class ApproxTimeSync:
    """Pairs RGB frames with the nearest thermal frame; see the module docstring.

    Args:
        cfg: slop, queue size and maximum wait.

    Stamps are seconds (float); ``arrival`` is a monotonic receive time in seconds, used only for the wait
    bound. Outputs come in RGB stamp order.
    """

    def __init__(self, cfg: SyncConfig = SyncConfig()) -> None:
        self.cfg = cfg
        self._thermal: deque[tuple[float, Any]] = deque(maxlen=cfg.queue_size)
        self._rgb: deque[_Pending] = deque()
        self._period: float | None = None
        self.stats = SyncStats()

    def configure(self, cfg: SyncConfig) -> None:
        """Apply new settings (live); buffered messages are kept up to the new queue size."""
        self.cfg = cfg
        self._thermal = deque(self._thermal, maxlen=cfg.queue_size)

    # -- inputs --------------------------------------------------------------------------------------------
    def add_thermal(self, stamp: float, item: Any, arrival: float) -> list[Pair]:
        """Buffer a thermal frame; returns the RGB pairs it completes."""
        self.stats.thermal_in += 1
        if self._thermal:
            last = self._thermal[-1][0]
            if stamp <= last:
                self.stats.thermal_out_of_order += 1
                return self.poll(arrival)
            dt = stamp - last
            # Shortest recent interval, slowly forgotten: a conservative (small) period estimate keeps frames
            # waiting only when a closer thermal frame can really still come.
            self._period = dt if self._period is None else min(dt, 0.9 * self._period + 0.1 * dt)
        self._thermal.append((stamp, item))
        return self.poll(arrival)

    def add_rgb(self, stamp: float, item: Any, arrival: float) -> list[Pair]:
        """Queue an RGB frame; returns the pairs that are now decided (possibly including this one)."""
        self.stats.rgb_in += 1
        self._rgb.append(_Pending(stamp, item, arrival))
        out = []
        while len(self._rgb) > self.cfg.queue_size:
            self.stats.rgb_overflow += 1
            out.append(self._release(self._rgb.popleft()))
        return out + self.poll(arrival)

    def poll(self, now: float) -> list[Pair]:
        """Release every pending RGB frame whose partner is decided or whose wait expired at arrival time ``now``."""
        out = []
        while self._rgb:
            p = self._rgb[0]
            if not (self._decided(p) or now - p.arrival >= self.cfg.sync_max_wait_s):
                break
            out.append(self._release(self._rgb.popleft()))
        return out

    def flush(self) -> list[Pair]:
        """Release every pending RGB frame with the best partner available now."""
        out = [self._release(p) for p in self._rgb]
        self._rgb.clear()
        return out

    def clear(self) -> None:
        """Drop all buffered frames (e.g. after a time jump)."""
        self._thermal.clear()
        self._rgb.clear()
        self._period = None

    def clear_thermal(self) -> None:
        """Drop the buffered thermal frames (the thermal camera started a new time line)."""
        self._thermal.clear()
        self._period = None

    def reset_stats(self) -> None:
        self.stats = SyncStats()

    @property
    def pending(self) -> int:
        """Number of RGB frames waiting for a decision."""
        return len(self._rgb)

    # -- internals -----------------------------------------------------------------------------------------
    def _nearest(self, stamp: float) -> tuple[float, Any] | None:
        if not self._thermal:
            return None
        stamps = [s for s, _ in self._thermal]
        i = bisect.bisect_left(stamps, stamp)
        cands = [self._thermal[j] for j in (i - 1, i) if 0 <= j < len(stamps)]
        return min(cands, key=lambda c: abs(c[0] - stamp))

    def _decided(self, p: _Pending) -> bool:
        if not self._thermal:
            return False
        newest = self._thermal[-1][0]
        if newest >= p.stamp:
            return True
        if self._period is None:
            return False
        # Next thermal frame expected at newest + period; it cannot beat the current best partner.
        return newest + self._period - p.stamp >= p.stamp - newest

    def _release(self, p: _Pending) -> Pair:
        best = self._nearest(p.stamp)
        if best is None or abs(best[0] - p.stamp) > self.cfg.approximate_sync_slop_s:
            self.stats.unpaired_rgb += 1
            return Pair(p.stamp, p.item, None, None)
        self.stats.paired += 1
        return Pair(p.stamp, p.item, best[0], best[1])
