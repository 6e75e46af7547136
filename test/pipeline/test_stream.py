"""FusionStream (ROS-free): pairing, thermal loss on the stamps, stamp jumps, drops and failures."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fusion_ros.pipeline.fuser import Fuser
from fusion_ros.pipeline.stream import FusionStream, LatestFrameWorker, StreamConfig
from fusion_ros.pipeline.sync import SyncConfig


class Blend:
    """A backend that averages its inputs and can be made slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.resets = 0

    def infer(self, t, v, use_memory=True):
        if self.delay_s:
            time.sleep(self.delay_s)
        return 0.5 * t + 0.5 * v

    def reset_memory(self):
        self.resets += 1


TH = np.full((8, 10), 3000, np.uint16)
RGB = np.zeros((8, 10, 3), np.uint8)


def _stream(**cfg) -> FusionStream:
    return FusionStream(Fuser(Blend()), StreamConfig(**cfg), SyncConfig(sync_max_wait_s=0.0))


def _wait_idle(worker, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while not worker.idle() and time.monotonic() < end:
        time.sleep(0.005)
    return worker.idle()


def _submit_one_by_one(worker, stream, n: int) -> None:
    """Frames 0..n-1 (item = index), each handed over once the previous one is published or failed."""
    stream.add_thermal(0.0, TH)
    for i in range(n):
        worker.submit(stream.add_rgb(i * 0.01, RGB, item=i))
        _wait_idle(worker, 2.0)


def _feed(stream, t_start, t_end, rgb_hz=30.0, thermal_hz=10.0, thermal=True):
    """Interleave both cameras by stamp (arrival = stamp); return the processed outputs."""
    events = [(t_start + i / rgb_hz, "rgb") for i in range(int((t_end - t_start) * rgb_hz))]
    if thermal:
        events += [(t_start + j / thermal_hz, "th") for j in range(int((t_end - t_start) * thermal_hz))]
    outs = []
    for t, kind in sorted(events, key=lambda e: (e[0], e[1] == "rgb")):
        jobs = stream.add_thermal(t, TH, now=t) if kind == "th" else stream.add_rgb(t, RGB, item=t, now=t)
        outs += stream.run(jobs)
    return outs


def test_fuses_every_frame_offline():
    s = _stream()
    outs = _feed(s, 100.0, 102.0)
    assert len(outs) >= 59 and sum(o.fused is not None for o in outs) >= 58
    assert s.stats.passthrough <= 1 and s.stats.stamp_jumps == 0


def test_thermal_loss_is_judged_on_stamps_not_on_arrival():
    s = _stream(thermal_timeout_s=0.5)
    _feed(s, 0.0, 1.0)
    # A receiver that is 3 s behind: the thermal partner of this RGB frame has arrived, so it is fused.
    s.add_thermal(1.0, TH, now=4.0)
    outs = s.run(s.add_rgb(1.01, RGB, now=4.0))
    assert [o.fused is not None for o in outs] == [True] and s.mode == "fusing"


def test_silent_thermal_passes_through_then_resumes_with_a_new_memory():
    s = _stream(thermal_timeout_s=0.3)
    _feed(s, 0.0, 1.0)
    outs = _feed(s, 1.0, 2.0, thermal=False)
    assert s.mode == "passthrough" and sum(o.fused is None for o in outs) >= 20
    resets = s.fuser.memory_resets
    outs = _feed(s, 2.0, 3.0)
    assert s.mode == "fusing" and outs[-1].fused is not None and s.fuser.memory_resets > resets


@pytest.mark.parametrize("jump", [-10.0, 60.0])
def test_stamp_jump_restarts_pairing_and_fusion_resumes(jump):
    s = _stream(stamp_jump_s=1.0)
    _feed(s, 100.0, 102.0)
    fused_before, resets = s.stats.fused, s.fuser.memory_resets
    outs = _feed(s, 102.0 + jump, 104.0 + jump)     # a looped bag (back 10 s) or a paused one (forward 60 s)
    assert s.stats.stamp_jumps >= 1
    assert sum(o.fused is not None for o in outs) >= 50, s.stats
    assert s.stats.fused > fused_before and s.fuser.memory_resets > resets


def test_looped_recording_keeps_fusing():
    s = _stream()
    for _ in range(3):
        outs = _feed(s, 50.0, 52.0)
        assert sum(o.fused is not None for o in outs) >= 55
    assert s.stats.stamp_jumps >= 2


def test_resolution_changes_are_counted_and_fused():
    s = _stream()
    s.add_thermal(0.0, TH, now=0.0)
    s.run(s.add_rgb(0.0, RGB, now=0.0))
    s.add_thermal(0.1, np.full((16, 20), 3000, np.uint16), now=0.1)
    outs = s.run(s.add_rgb(0.1, np.zeros((12, 14, 3), np.uint8), now=0.1))
    assert outs[0].fused.shape == (12, 14, 3)
    assert s.stats.rgb_resolution_changes == 1 and s.stats.thermal_resolution_changes == 1


def test_worker_drops_old_frames_when_the_network_is_slow_and_counts_them():
    stream = FusionStream(Fuser(Blend(delay_s=0.05)), StreamConfig(thermal_timeout_s=5.0),
                          SyncConfig(approximate_sync_slop_s=1.0, sync_max_wait_s=0.0))
    published = []
    worker = LatestFrameWorker(stream, published.append)
    stream.add_thermal(0.0, TH)
    t0 = time.monotonic()
    n = 60
    for i in range(n):                   # 200 Hz camera, 20 Hz network
        worker.submit(stream.add_rgb(i * 0.005, RGB, item=i))
        time.sleep(0.005)
    _wait_idle(worker, 10 - (time.monotonic() - t0))
    worker.stop()
    items = [o.job.item for o in published]
    assert items == sorted(items) and items[-1] == n - 1            # in order, the newest one answered
    assert stream.stats.dropped > 0 and len(published) + stream.stats.dropped == n
    assert len(published) < n / 2


class SlowPreparation(Fuser):
    """A fuser whose AGC/registration/conversion takes as long as a slow CPU's."""

    def prepare(self, thermal, rgb, stamp=None):
        time.sleep(0.03)
        return super().prepare(thermal, rgb, stamp)


def test_worker_prepares_the_next_frame_while_the_network_runs():
    """Network 40 ms, preparation 30 ms, a frame every 60 ms: one after the other they would need 70 ms a frame
    and drop; overlapped, the network alone sets the pace and every frame is fused."""
    stream = FusionStream(SlowPreparation(Blend(delay_s=0.04)), StreamConfig(thermal_timeout_s=5.0),
                          SyncConfig(approximate_sync_slop_s=1.0, sync_max_wait_s=0.0))
    published = []
    worker = LatestFrameWorker(stream, lambda out: published.append(out.job.item))
    n = 25
    for i in range(n):
        stream.add_thermal(i * 0.06, TH)
        worker.submit(stream.add_rgb(i * 0.06, RGB, item=i))
        time.sleep(0.06)
    _wait_idle(worker, 5.0)
    worker.stop()
    assert published == list(range(n)) and stream.stats.dropped == 0 and stream.stats.fused == n


class FailsOnce(Blend):
    """A backend whose second call raises, as an engine may on one odd frame."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def infer(self, t, v, use_memory=True):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("engine refused")
        return super().infer(t, v, use_memory)


def test_worker_counts_a_network_failure_and_goes_idle():
    stream = FusionStream(Fuser(FailsOnce()), StreamConfig(thermal_timeout_s=5.0), SyncConfig(sync_max_wait_s=0.0))
    published, failures = [], []
    worker = LatestFrameWorker(stream, lambda out: published.append(out.job.item),
                               on_failure=lambda kind, exc, job: failures.append((kind, job.item)))
    _submit_one_by_one(worker, stream, 3)
    assert worker.idle()                 # the failed frame is no longer in flight
    worker.stop()
    assert published == [0, 2] and failures == [("fuse_RuntimeError", 1)]
    assert stream.stats.failures["fuse_RuntimeError"] == 1 and stream.stats.fused == 2


def test_worker_survives_failing_frames_and_counts_them_by_kind():
    stream = FusionStream(Fuser(Blend()), StreamConfig(thermal_timeout_s=5.0), SyncConfig(sync_max_wait_s=0.0))
    seen = []

    def publish(out):
        if out.job.item == 1:
            raise ValueError("encoder refused")
        seen.append(out.job.item)

    failures = []
    worker = LatestFrameWorker(stream, publish, on_failure=lambda kind, exc, job: failures.append(kind))
    _submit_one_by_one(worker, stream, 3)
    worker.stop()
    assert seen == [0, 2] and failures == ["publish_ValueError"]
    assert stream.stats.failures["publish_ValueError"] == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("fusion-") and t.is_alive()]


def test_worker_stop_is_bounded_when_publishing_hangs():
    """A publisher stuck in a write (a DDS peer gone mid-shutdown, say) must not hang the stop: it returns False
    within its timeout, with the next frame still waiting in the outbox."""
    stream = FusionStream(Fuser(Blend()), StreamConfig(thermal_timeout_s=5.0),
                          SyncConfig(approximate_sync_slop_s=1.0, sync_max_wait_s=0.0))
    release, published = threading.Event(), []

    def stuck_publish(out):
        release.wait()
        published.append(out.job.item)

    worker = LatestFrameWorker(stream, stuck_publish)
    stream.add_thermal(0.0, TH)
    for i in range(2):                  # frame 0 blocks the publisher, frame 1 fills the outbox
        worker.submit(stream.add_rgb(i * 0.01, RGB, item=i))
        time.sleep(0.1)
    t0 = time.monotonic()
    assert worker.stop(timeout=0.3) is False
    assert time.monotonic() - t0 < 1.0
    release.set()                       # the publisher comes back: the threads still end on their own
    end = time.monotonic() + 5.0
    while any(t.is_alive() for t in worker._threads) and time.monotonic() < end:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in worker._threads) and published[:1] == [0]


def test_worker_stop_returns_true_when_every_stage_ended():
    stream = _stream(thermal_timeout_s=5.0)
    worker = LatestFrameWorker(stream, lambda out: None)
    _submit_one_by_one(worker, stream, 2)
    assert worker.stop() is True
