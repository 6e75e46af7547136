"""``FusionStream``: two timed image streams in, one fused stream out (ROS-free).

The one object that turns an RGB stream and a thermal stream into output frames, used by the node, ``bag fuse``,
the demo and the benchmarks. It owns:

- **pairing**: each RGB frame gets the nearest thermal frame within the slop (:class:`ApproxTimeSync`);
- **thermal loss**: judged on the stream's own clock, the header stamps. An RGB frame whose stamp is more than
  ``thermal_timeout_s`` after the newest thermal stamp is passed through unchanged (mode ``passthrough``), at once,
  without waiting for a partner; the first thermal frame after that resumes fusion with a fresh streaming memory.
  A receiver that falls behind therefore never passes through a frame whose thermal partner has arrived;
- **stamp jumps**: a stamp that moves backwards, or an RGB stamp that moves forwards, by more than ``stamp_jump_s``
  (a looped bag, a clock reset, a paused recording) lets go of that stream's frames of the old time line, resets
  the memory and counts the jump; the next pair is fused again;
- **newest frame wins**: :class:`LatestFrameWorker` fuses off the caller's thread and, when the network is
  slower than the camera, drops the frames that waited too long for newer ones and counts the drops (no queue:
  an answered frame is at most ``sync_max_wait_s`` plus about three frame times old);
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
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fusion_ros.errors import ConfigError
from fusion_ros.pipeline.fuser import Fuser, FuserTimings, PreparedPair
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
    arrival: float = 0.0             # when the RGB frame came in (the stream's clock)
    decided: float = 0.0             # when it was handed to the worker (the worker's clock), for its drop rule

    @property
    def offset(self) -> float | None:
        return None if self.thermal_stamp is None else self.stamp - self.thermal_stamp


@dataclass
class Output:
    """A processed job: ``fused`` (H, W, 3) uint8 RGB, or None for passthrough (publish ``job.rgb`` / the input)."""

    job: Job
    fused: np.ndarray | None
    timings: FuserTimings | None = None


@dataclass
class StagedJob:
    """A job between the stages of :meth:`FusionStream.process` (``pair`` is None for passthrough)."""

    job: Job
    pair: PreparedPair | None = None
    network_output: Any = None


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
        if self._last_thermal is not None and self._last_thermal - stamp > self.cfg.stamp_jump_s:
            self._jump(f"thermal stamp jumped back {self._last_thermal - stamp:.3f} s")
            self.sync.clear_thermal()
            self._last_thermal = None
        self._thermal_size = self._count_resize(self._thermal_size, thermal.shape, "thermal_resolution_changes")
        if self._last_thermal is not None and stamp <= self._last_thermal:
            self.stats.thermal_out_of_order += 1
            return self._jobs(self.sync.poll(now))
        self._last_thermal = stamp
        if self.mode == "passthrough":
            log.info("thermal is back: fusion resumed with a new streaming memory")
            self.mode = "fusing"
            self._reset_next = True
        return self._jobs(self.sync.add_thermal(stamp, thermal, now))

    def add_rgb(self, stamp: float, rgb: np.ndarray, item: Any = None, now: float | None = None) -> list[Job]:
        """Queue a decoded RGB frame (``item`` travels with it); returns the jobs that are now decided."""
        now = self.clock() if now is None else now
        self.stats.rgb_in += 1
        out = []
        last = self._last_rgb
        if last is not None and abs(stamp - last) > self.cfg.stamp_jump_s:
            self._jump(f"RGB stamp jumped {stamp - last:+.3f} s")
            out += self._jobs(self.sync.flush())        # frames of the old time line, with their old partners
            self._first_rgb = stamp
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
            return out + [Job(stamp, rgb, item, arrival=now)]
        return out + self._jobs(self.sync.add_rgb(stamp, (rgb, item, now), now))

    def poll(self, now: float | None = None) -> list[Job]:
        """Release RGB frames whose wait for a closer thermal frame has expired (call it periodically)."""
        return self._jobs(self.sync.poll(self.clock() if now is None else now))

    def flush(self) -> list[Job]:
        """Release every pending RGB frame with the best partner available now (end of a recording)."""
        return self._jobs(self.sync.flush())

    # -- work ----------------------------------------------------------------------------------------------
    def process(self, job: Job) -> Output:
        """Fuse one job (or pass it through); counts it. Raises what the fuser raises (the caller counts it)."""
        staged = self.prepare(job)
        self.infer(staged)
        return self.finish(staged)

    # The three stages of process(), for a caller that overlaps them (LatestFrameWorker): each is called in job
    # order, and infer() of one job may run while the next one is prepared and the previous one finished.
    def prepare(self, job: Job) -> StagedJob:
        """AGC, registration and conversion (nothing for passthrough)."""
        if job.thermal is None:
            return StagedJob(job)
        self._start_memory_if_asked(job)
        return StagedJob(job, self.fuser.prepare(job.thermal, job.rgb, job.stamp))

    def infer(self, staged: StagedJob) -> None:
        """The network (nothing for passthrough)."""
        if staged.pair is not None:
            staged.network_output = self.fuser.infer(staged.pair)

    def finish(self, staged: StagedJob) -> Output:
        """The network's output back to a uint8 image at the RGB size; counts the frame."""
        if staged.pair is None:
            self.stats.passthrough += 1
            return Output(staged.job, None)
        fused = self.fuser.finish(staged.network_output, staged.pair)
        self.stats.fused += 1
        return Output(staged.job, fused, staged.pair.timings)

    def network_inputs(self, job: Job) -> tuple[np.ndarray, np.ndarray] | None:
        """What the network would get for this job, exactly as :meth:`process` prepares it (AGC levels and memory
        resets included), without running it: (thermal (1,1,H,W), visible (1,3,H,W)) float32, or None for
        passthrough. Training's dataset extraction writes these, so its pairs are the node's by construction."""
        if job.thermal is None:
            return None
        self._start_memory_if_asked(job)
        return self.fuser.network_inputs(job.thermal, job.rgb)

    def run(self, jobs: list[Job]) -> list[Output]:
        """Process ``jobs`` in order (offline use: every frame fused, none dropped)."""
        return [self.process(j) for j in jobs]

    # -- internals -----------------------------------------------------------------------------------------
    def _start_memory_if_asked(self, job: Job) -> None:
        if job.reset_memory:
            self.fuser.reset()

    def _thermal_lost(self, rgb_stamp: float) -> bool:
        ref = self._last_thermal if self._last_thermal is not None else self._first_rgb
        return rgb_stamp - ref > self.cfg.thermal_timeout_s

    def _jump(self, why: str) -> None:
        """One stream started a new time line: its old frames are let go (by the caller), the memory restarts.

        Each stream handles its own jump: old frames of the other stream never pair with new ones (their stamps
        are farther apart than the slop) and are let go when that stream jumps too.
        """
        self.stats.stamp_jumps += 1
        log.warning("%s: pairing restarted, streaming memory reset", why)
        self._reset_next = True

    def _count_resize(self, last: tuple[int, ...] | None, shape: tuple[int, ...], counter: str) -> tuple[int, ...]:
        if last is not None and last != shape:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        return shape

    def _jobs(self, pairs: list[Pair]) -> list[Job]:
        jobs = []
        for p in pairs:
            rgb, item, arrival = p.rgb
            job = Job(p.rgb_stamp, rgb, item, p.thermal, p.thermal_stamp, arrival=arrival)
            if job.thermal is not None and self._reset_next:
                job.reset_memory, self._reset_next = True, False
            jobs.append(job)
        return jobs


class LatestFrameWorker:
    """Processes a stream's jobs in order on threads of its own; when it falls behind, the newest frames win.

    Three stages overlap, one thread each: the next job is prepared (AGC, registration, conversion) shortly before
    the current one leaves the network, and the previous one is converted back, encoded and published. The network is
    the only work on its thread, so the worker keeps up with a camera as fast as the network alone.

    Decided jobs wait in order. When the worker takes the next one, every waiting job that has waited longer than
    ``WAIT_FRAMES`` x the running frame time of the slowest stage is dropped (counted in
    ``stream.stats.dropped``), as long as a newer one waits. Frames decided together (an RGB frame that waited for
    the next thermal frame is released with the one after it) are both fused when there is time, and nothing
    queues up when there is not: an answered frame is at most the pairing wait (``sync_max_wait_s``) plus about
    three frame times old.

    Args:
        stream: the stream whose ``prepare``/``infer``/``finish`` run here.
        publish: called with every :class:`Output`, in order, on the publishing thread.
        on_failure: called with (kind, exception, job) when processing or publishing a job raises; the job is
            skipped and counted in ``stream.stats.failures[kind]``; the worker keeps running.
        clock: monotonic clock, s (the one the stream stamps arrivals with).
    """

    MAX_WAITING = 8         # a hard cap on top of the age rule
    # A decided frame may wait this many frame times for the network: the second of two frames decided together
    # waits one, and is still fused when that network time runs a little long (the network shares the CPU).
    WAIT_FRAMES = 1.6
    # The next frame's preparation starts this much (plus twice its running time) before the network is expected
    # to be free: a network that finishes early, or a thread that wakes late, must not leave the network idle.
    PREPARE_LEAD_S = 0.005
    STOP_CHECK_S = 0.5      # how often an idle publishing thread checks for a stop it was not told of

    def __init__(self, stream: FusionStream, publish: Callable[[Output], None],
                 on_failure: Callable[[str, Exception, Job], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.publish = publish
        self.on_failure = on_failure
        self.clock = clock
        self._stage_time_s = {"prepare": 0.0, "infer": 0.0}     # running estimates, s
        self._cv = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._ready: StagedJob | None = None                      # prepared, waiting for the network
        self._in_flight = 0                                       # taken from _waiting, not yet published
        self._infer_started: float | None = None                  # clock() when the network took its job
        self._stop = False
        self._outbox: queue.Queue[StagedJob | None] = queue.Queue(maxsize=1)
        self._threads = [threading.Thread(target=loop, name=f"fusion-{name}", daemon=True)
                         for name, loop in (("prepare", self._prepare_loop), ("infer", self._infer_loop),
                                            ("publish", self._publish_loop))]
        for t in self._threads:
            t.start()

    @property
    def frame_time_s(self) -> float:
        """Running estimate of the time per frame of the slowest stage (what the age rule allows for)."""
        return max(self._stage_time_s.values())

    def submit(self, jobs: list[Job]) -> None:
        """Hand over decided jobs (in order)."""
        if not jobs:
            return
        now = self.clock()
        for job in jobs:
            job.decided = now
        with self._cv:
            self._waiting.extend(jobs)
            while len(self._waiting) > self.MAX_WAITING:
                self._drop_oldest()
            self._cv.notify_all()

    def idle(self) -> bool:
        """True when no job waits and none is being processed or published."""
        with self._cv:
            return not self._waiting and not self._in_flight

    def stop(self, timeout: float = 2.0) -> bool:
        """Finish the job in the network and publish it (waiting ones are dropped) and end the threads.

        Returns within about ``timeout`` seconds in all: False when a stage was still busy then (its daemon thread
        is left to end with the process; a stop must never hang on one frame).
        """
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.0)

        with self._cv:
            self._stop = True
            self._waiting.clear()
            self._cv.notify_all()
        prepare, infer, publish = self._threads
        prepare.join(left())
        infer.join(left())
        try:
            # The publishing thread may still be on the previous frame, with the last one waiting in the outbox.
            self._outbox.put(None, timeout=left())
        except queue.Full:
            pass
        publish.join(left())
        return not any(t.is_alive() for t in self._threads)

    # -- stages ----------------------------------------------------------------------------------------------
    def _drop_oldest(self) -> None:
        job = self._waiting.popleft()
        self.stream.stats.dropped += 1
        # A memory reset must survive the drop of the frame that carried it.
        self._waiting[0].reset_memory |= job.reset_memory

    def _next_job(self) -> Job:
        budget = self.WAIT_FRAMES * self.frame_time_s
        now = self.clock()
        while len(self._waiting) > 1 and now - self._waiting[0].decided > budget:
            self._drop_oldest()
        self._in_flight += 1
        return self._waiting.popleft()

    def _prepare_loop(self) -> None:
        while True:
            with self._cv:
                # The next job is chosen only when it can be prepared just in time for the network, so that it is
                # the newest one when the network gets to it.
                while not self._stop:
                    busy_s = self._network_busy_s()
                    if self._waiting and self._ready is None and not busy_s:
                        break
                    self._cv.wait(busy_s or None)
                if self._stop:
                    return
                job = self._next_job()
            t0 = self.clock()
            ok, staged = self._attempt("fuse", self.stream.prepare, job, job)
            with self._cv:
                self._timed("prepare", t0)
                if ok:
                    self._ready = staged
                else:
                    self._in_flight -= 1
                self._cv.notify_all()

    def _infer_loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and self._ready is None:
                    self._cv.wait()
                if self._stop:
                    return
                staged, self._ready = self._ready, None
                t0 = self._infer_started = self.clock()
                self._cv.notify_all()
            ok, _ = self._attempt("fuse", self.stream.infer, staged, staged.job)
            if ok:
                self._outbox.put(staged)        # waits only while the previous frame is still being published
            with self._cv:
                self._timed("infer", t0)
                self._infer_started = None
                self._cv.notify_all()
                if not ok:
                    self._in_flight -= 1

    def _publish_loop(self) -> None:
        infer = self._threads[1]
        while True:
            try:
                staged = self._outbox.get(timeout=self.STOP_CHECK_S)
            except queue.Empty:
                # A stop that could not hand over its end mark (this thread was stuck in publish) ends it here.
                if self._stop and not infer.is_alive():
                    return
                continue
            if staged is None:
                return
            ok, out = self._attempt("fuse", self.stream.finish, staged, staged.job)
            if ok:
                self._attempt("publish", self.publish, out, staged.job)
            with self._cv:
                self._in_flight -= 1

    def _network_busy_s(self) -> float:
        """How long until the network is expected to be free minus the preparation time, s (0: prepare now)."""
        if self._infer_started is None:
            return 0.0
        lead = 2 * self._stage_time_s["prepare"] + self.PREPARE_LEAD_S
        left = self._infer_started + self._stage_time_s["infer"] - lead - self.clock()
        return max(left, 0.0)

    def _attempt(self, stage: str, fn: Callable[[Any], Any], arg: Any, job: Job) -> tuple[bool, Any]:
        """(True, fn(arg)), or (False, None) with the failure counted and reported."""
        try:
            return True, fn(arg)
        except Exception as exc:        # a frame may fail in many ways (shape, engine, encoder); not the stream
            self._failed(stage, exc, job)
            return False, None

    def _timed(self, stage: str, t0: float) -> None:
        dt = self.clock() - t0
        old = self._stage_time_s[stage]
        self._stage_time_s[stage] = dt if not old else 0.8 * old + 0.2 * dt

    def _failed(self, stage: str, exc: Exception, job: Job) -> None:
        kind = f"{stage}_{getattr(exc, 'kind', None) or type(exc).__name__}"
        self.stream.stats.failures[kind] += 1
        try:
            if self.on_failure is not None:
                self.on_failure(kind, exc, job)
                return
        except Exception as report_exc:     # e.g. the caller's logger is gone at shutdown
            exc = report_exc
        log.warning("frame %.3f skipped (%s): %s", job.stamp, kind, exc)
