"""``FusionStream``: two timed image streams in, one fused stream out (ROS-free).

The one object that turns an RGB stream and a thermal stream into output frames, used by the node, ``bag fuse``,
the demo and the benchmarks. It owns:

- **pairing**: each RGB frame gets the nearest thermal frame within the slop (:class:`ApproxTimeSync`);
- **thermal loss**: judged on the stream's own clock, the header stamps. An RGB frame whose stamp is more than
  ``thermal_timeout_s`` after the newest thermal stamp is passed through unchanged (mode ``passthrough``), at once,
  without waiting for a partner; the first thermal frame after that resumes fusion with a fresh streaming memory.
  A receiver that falls behind therefore never passes through a frame whose thermal partner has arrived;
- **stamp jumps**: a stamp that moves backwards, or an RGB stamp that moves forwards, by more than ``stamp_jump_s``
  (a looped bag, a clock reset, a paused recording) releases what is pending, forgets the buffered frames of
  the old time line, resets the memory and counts the jump; the next pair is fused again;
- **newest frame wins**: :class:`LatestFrameWorker` fuses off the caller's thread and, when the network is
  slower than the camera, drops the waiting frames for the newer ones and counts the drops (no queue, so the
  latency stays bounded by a couple of inferences);
- **counters**: everything /diagnostics shows (:class:`StreamStats`).

Inputs are decoded arrays with their stamps; ``item`` is carried through untouched (the node passes the ROS
message, so the output keeps its header).

Example (synchronous, every frame fused):
    >>> import numpy as np
    >>> class Blend:
    ...     def infer(self, t, v, use_memory=True): return 0.5 * t + 0.5 * v
    ...     def reset_memory(self): pass
    >>> from fusion_ros.pipeline.fuser import Fuser
    >>> stream = FusionStream(Fuser(Blend()))
    >>> th, rgb = np.zeros((8, 8), np.uint16), np.zeros((8, 8, 3), np.uint8)
    >>> stream.add_thermal(1.0, th, now=0.0)
    []
    >>> [f.fused is not None for f in map(stream.process, stream.add_rgb(1.0, rgb, now=0.0))]
    [True]
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fusion_ros.errors import ConfigError
from fusion_ros.pipeline.fuser import Fuser, FuserTimings
from fusion_ros.pipeline.sync import ApproxTimeSync, Pair, SyncConfig

__all__ = ["StreamConfig", "StreamStats", "Job", "Output", "FusionStream", "LatestFrameWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    """Thermal-loss and time-line settings of a :class:`FusionStream`."""

    # Thermal stamps this much older than the RGB stamp (s) -> RGB frames published unchanged.
    thermal_timeout_s: float = field(default=0.5, metadata={
        "doc": "newest thermal stamp older than the RGB stamp by more than this (s) -> RGB published unchanged "
               "(passthrough), WARN in /diagnostics", "range": (0.01, 60.0)})
    # A stamp jump larger than this (s) starts a new time line.
    stamp_jump_s: float = field(default=1.0, metadata={
        "doc": "a stamp moving backwards, or the RGB stamp forwards, by more than this (s) clears the pairing and "
               "resets the memory (looped bag, clock reset)", "range": (0.01, 3600.0)})

    def __post_init__(self) -> None:
        if not self.thermal_timeout_s > 0:
            raise ConfigError(f"thermal_timeout_s={self.thermal_timeout_s} must be > 0 seconds")
        if not self.stamp_jump_s > 0:
            raise ConfigError(f"stamp_jump_s={self.stamp_jump_s} must be > 0 seconds")


@dataclass
class StreamStats:
    """Counters since the stream was created (or :meth:`FusionStream.reset_stats`)."""

    rgb_in: int = 0
    thermal_in: int = 0
    fused: int = 0
    passthrough: int = 0
    dropped: int = 0                 # decided frames replaced by a newer one before they were fused
    stamp_jumps: int = 0
    rgb_resolution_changes: int = 0
    thermal_resolution_changes: int = 0
    thermal_out_of_order: int = 0
    # Per-frame failures while fusing or publishing, by kind (the frame is skipped).
    failures: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class Job:
    """A decided output frame: fuse ``rgb`` with ``thermal``, or pass it through when ``thermal`` is None."""

    stamp: float
    rgb: np.ndarray
    item: Any
    thermal: np.ndarray | None = None
    thermal_stamp: float | None = None
    reset_memory: bool = False       # start a new memory first (thermal resumed, stamp jump)

    @property
    def offset(self) -> float | None:
        return None if self.thermal_stamp is None else self.stamp - self.thermal_stamp


@dataclass
class Output:
    """A processed job: ``fused`` (H, W, 3) uint8 RGB, or None for passthrough (publish ``job.rgb`` / the input)."""

    job: Job
    fused: np.ndarray | None
    timings: FuserTimings | None = None


class FusionStream:
    """Pairing, thermal loss, stamp jumps and counters around a :class:`Fuser`; see the module docstring.

    Args:
        fuser: the frame fuser (owns the engine's streaming memory).
        cfg: thermal-loss and stamp-jump settings.
        sync_cfg: pairing settings.
        clock: monotonic clock in seconds for the pairing wait bound (``sync_max_wait_s``); inputs may pass ``now``.

    ``add_rgb``/``add_thermal``/``poll`` are cheap and return the jobs that are now decided; ``process`` fuses one
    (call it in order, from one thread). The input side and ``process`` may run on different threads.
    """

    def __init__(self, fuser: Fuser, cfg: StreamConfig = StreamConfig(), sync_cfg: SyncConfig = SyncConfig(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fuser = fuser
        self.cfg = cfg
        self.sync = ApproxTimeSync(sync_cfg)
        self.clock = clock
        self.stats = StreamStats()
        self.mode = "fusing"
        self._last_rgb: float | None = None
        self._last_thermal: float | None = None
        self._first_rgb: float | None = None
        self._rgb_size: tuple[int, ...] | None = None
        self._thermal_size: tuple[int, ...] | None = None
        self._reset_next = False

    # -- settings ------------------------------------------------------------------------------------------
    def configure(self, cfg: StreamConfig, sync_cfg: SyncConfig) -> None:
        """Apply new settings (live); buffered frames are kept."""
        self.cfg = cfg
        self.sync.configure(sync_cfg)

    def reset(self) -> None:
        """Forget every buffered frame and the time line; the next pair starts a new memory."""
        self.sync.clear()
        self._last_rgb = self._last_thermal = self._first_rgb = None
        self._reset_next = True
        self.mode = "fusing"

    def reset_stats(self) -> None:
        self.stats = StreamStats()
        self.sync.reset_stats()

    # -- inputs --------------------------------------------------------------------------------------------
    def add_thermal(self, stamp: float, thermal: np.ndarray, now: float | None = None) -> list[Job]:
        """Buffer a decoded thermal frame; returns the jobs it decides."""
        now = self.clock() if now is None else now
        self.stats.thermal_in += 1
        out = []
        if self._last_thermal is not None and self._last_thermal - stamp > self.cfg.stamp_jump_s:
            out += self._jump(stamp, f"thermal stamp jumped back {self._last_thermal - stamp:.3f} s")
        self._thermal_size = self._count_resize(self._thermal_size, thermal.shape, "thermal_resolution_changes")
        if self._last_thermal is not None and stamp <= self._last_thermal:
            self.stats.thermal_out_of_order += 1
            return out + self._jobs(self.sync.poll(now))
        self._last_thermal = stamp
        if self.mode == "passthrough":
            log.info("thermal is back: fusion resumed with a new streaming memory")
            self.mode = "fusing"
            self._reset_next = True
        return out + self._jobs(self.sync.add_thermal(stamp, thermal, now))

    def add_rgb(self, stamp: float, rgb: np.ndarray, item: Any = None, now: float | None = None) -> list[Job]:
        """Queue a decoded RGB frame (``item`` travels with it); returns the jobs that are now decided."""
        now = self.clock() if now is None else now
        self.stats.rgb_in += 1
        out = []
        last = self._last_rgb
        if last is not None and (last - stamp > self.cfg.stamp_jump_s or stamp - last > self.cfg.stamp_jump_s):
            out += self._jump(stamp, f"RGB stamp jumped {stamp - last:+.3f} s")
        self._rgb_size = self._count_resize(self._rgb_size, rgb.shape, "rgb_resolution_changes")
        self._last_rgb = stamp
        if self._first_rgb is None:
            self._first_rgb = stamp
        if self._thermal_lost(stamp):
            if self.mode != "passthrough":
                log.warning("no thermal frame within %.3f s of the RGB stamps: passing RGB through unchanged",
                            self.cfg.thermal_timeout_s)
                self.mode = "passthrough"
            out += self._jobs(self.sync.flush())
            return out + [Job(stamp, rgb, item)]
        return out + self._jobs(self.sync.add_rgb(stamp, (rgb, item), now))

    def poll(self, now: float | None = None) -> list[Job]:
        """Release RGB frames whose wait for a closer thermal frame has expired (call it periodically)."""
        return self._jobs(self.sync.poll(self.clock() if now is None else now))

    def flush(self) -> list[Job]:
        """Release every pending RGB frame with the best partner available now (end of a recording)."""
        return self._jobs(self.sync.flush())

    # -- work ----------------------------------------------------------------------------------------------
    def process(self, job: Job) -> Output:
        """Fuse one job (or pass it through); counts it. Raises what the fuser raises (the caller counts it)."""
        if job.thermal is None:
            self.stats.passthrough += 1
            return Output(job, None)
        if job.reset_memory:
            self.fuser.reset()
        fused = self.fuser.step(job.thermal, job.rgb, job.stamp)
        self.stats.fused += 1
        return Output(job, fused, FuserTimings(**vars(self.fuser.timings)))

    def run(self, jobs: list[Job]) -> list[Output]:
        """Process ``jobs`` in order (offline use: every frame fused, none dropped)."""
        return [self.process(j) for j in jobs]

    # -- internals -----------------------------------------------------------------------------------------
    def _thermal_lost(self, rgb_stamp: float) -> bool:
        ref = self._last_thermal if self._last_thermal is not None else self._first_rgb
        return rgb_stamp - ref > self.cfg.thermal_timeout_s

    def _jump(self, stamp: float, why: str) -> list[Job]:
        """Start a new time line at ``stamp``: release what is pending, forget the old frames, reset the memory."""
        self.stats.stamp_jumps += 1
        log.warning("%s: pairing restarted, streaming memory reset", why)
        released = self._jobs(self.sync.flush())
        self.sync.discard_far(stamp, self.cfg.stamp_jump_s)
        self._last_rgb, self._last_thermal = None, self.sync.newest_thermal_stamp
        self._first_rgb = stamp
        self._reset_next = True
        return released

    def _count_resize(self, last: tuple[int, ...] | None, shape: tuple[int, ...], counter: str) -> tuple[int, ...]:
        if last is not None and last != shape:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        return shape

    def _jobs(self, pairs: list[Pair]) -> list[Job]:
        jobs = []
        for p in pairs:
            rgb, item = p.rgb
            job = Job(p.rgb_stamp, rgb, item, p.thermal, p.thermal_stamp)
            if job.thermal is not None and self._reset_next:
                job.reset_memory, self._reset_next = True, False
            jobs.append(job)
        return jobs


class LatestFrameWorker:
    """Processes a stream's jobs in order on a thread of its own, newest first when it falls behind.

    Jobs decided together (an RGB frame that waited for the next thermal frame is released with the ones after
    it) wait together, at most ``batch`` of them; when a new decision comes while jobs still wait, the worker is
    behind and the waiting jobs are dropped (counted in ``stream.stats.dropped``). So nothing queues up: a frame
    waits at most for the one in progress and ``batch - 1`` frames decided with it.

    Args:
        stream: the stream whose ``process`` runs here.
        publish: called with every :class:`Output`, on the worker thread.
        on_failure: called with (kind, exception, job) when processing or publishing a job raises; the job is
            skipped and counted in ``stream.stats.failures[kind]``; the worker keeps running.
        batch: most jobs of one decision that wait (the older ones beyond it are dropped).
    """

    def __init__(self, stream: FusionStream, publish: Callable[[Output], None],
                 on_failure: Callable[[str, Exception, Job], None] | None = None, batch: int = 2) -> None:
        self.stream = stream
        self.publish = publish
        self.on_failure = on_failure
        self.batch = batch
        self._cv = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._stop = False
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name="fusion-worker", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[Job]) -> None:
        """Hand over the jobs of one decision; jobs still waiting from an earlier one are dropped."""
        if not jobs:
            return
        with self._cv:
            stale = list(self._waiting) + jobs[:-self.batch]
            self._waiting = collections.deque(jobs[-self.batch:])
            if stale:
                self.stream.stats.dropped += len(stale)
                # A memory reset must survive the drop of the frame that carried it.
                self._waiting[0].reset_memory |= any(j.reset_memory for j in stale)
            self._cv.notify()

    def idle(self) -> bool:
        """True when no job waits and none is being processed."""
        with self._cv:
            return not self._waiting and not self.busy

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the job in progress (waiting ones are dropped) and end the thread."""
        with self._cv:
            self._stop = True
            self._waiting.clear()
            self._cv.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                job = self._waiting.popleft()
                self.busy = True
            try:
                self._run(job)
            finally:
                with self._cv:
                    self.busy = False

    def _run(self, job: Job) -> None:
        stage = "fuse"
        try:
            out = self.stream.process(job)
            stage = "publish"
            self.publish(out)
        except Exception as exc:        # a frame may fail in many ways (shape, encoder, engine); the stream must not
            kind = getattr(exc, "kind", None) or f"{stage}_{type(exc).__name__}"
            self.stream.stats.failures[kind] += 1
            if self.on_failure is not None:
                self.on_failure(kind, exc, job)
            else:
                log.warning("frame %.3f skipped (%s): %s", job.stamp, kind, exc)
