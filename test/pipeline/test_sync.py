"""Approximate-time pairing: nearest thermal within slop, output follows RGB."""

from __future__ import annotations

import pytest

from fusion_ros.errors import ConfigError
from fusion_ros.pipeline.sync import ApproxTimeSync, SyncConfig


def _run(rgb_hz, th_hz, duration, slop=0.1, th_latency=0.0, th_offset=0.0):
    """Feed both streams in arrival order; arrival = stamp (+ latency for thermal)."""
    sync = ApproxTimeSync(SyncConfig(approximate_sync_slop_s=slop))
    events = [(i / rgb_hz, "rgb", i / rgb_hz) for i in range(int(duration * rgb_hz))]
    events += [(j / th_hz + th_offset + th_latency, "th", j / th_hz + th_offset) for j in range(int(duration * th_hz))]
    events.sort()
    pairs = []
    for arrival, kind, stamp in events:
        add = sync.add_rgb if kind == "rgb" else sync.add_thermal
        pairs += add(stamp, stamp, arrival)
    pairs += sync.flush()
    return sync, pairs


@pytest.mark.parametrize("th_hz", [9.0, 30.0, 60.0])
def test_every_rgb_frame_gets_the_nearest_thermal(th_hz):
    sync, pairs = _run(30.0, th_hz, 2.0)
    assert [p.rgb_stamp for p in pairs] == sorted(p.rgb_stamp for p in pairs)
    assert len(pairs) == 60
    th = [j / th_hz for j in range(int(2.0 * th_hz))]
    for p in pairs:
        nearest = min(th, key=lambda s: abs(s - p.rgb_stamp))
        assert p.thermal_stamp == pytest.approx(nearest)
    assert sync.stats.unpaired_rgb == 0


def test_late_thermal_still_paired_with_nearest():
    """Thermal arrives 40 ms after its stamp: RGB frames wait (bounded) for a closer thermal frame."""
    sync, pairs = _run(30.0, 9.0, 2.0, th_latency=0.04)
    th = [j / 9.0 for j in range(18)]
    exact = sum(p.thermal_stamp == pytest.approx(min(th, key=lambda s: abs(s - p.rgb_stamp))) for p in pairs)
    assert exact >= 0.95 * len(pairs)


def test_no_thermal_within_slop_counts_a_drop():
    sync, pairs = _run(30.0, 9.0, 1.0, slop=0.02)
    unpaired = [p for p in pairs if p.thermal is None]
    assert unpaired and sync.stats.unpaired_rgb == len(unpaired)
    for p in pairs:
        if p.thermal is not None:
            assert abs(p.offset) <= 0.02


def test_wait_is_bounded_by_max_wait():
    sync = ApproxTimeSync(SyncConfig(sync_max_wait_s=0.05))
    sync.add_thermal(0.0, "t0", arrival=0.0)
    assert sync.add_rgb(0.01, "r0", arrival=0.01) == []    # a closer thermal frame may still come
    assert sync.poll(0.03) == []
    out = sync.poll(0.07)
    assert [(p.rgb, p.thermal) for p in out] == [("r0", "t0")]


def test_queue_size_bounds_pending_rgb():
    sync = ApproxTimeSync(SyncConfig(queue_size=3))
    out = []
    for i in range(5):
        out += sync.add_rgb(i * 0.03, i, arrival=0.0)
    assert sync.pending == 3 and len(out) == 2 and sync.stats.rgb_overflow == 2


def test_config_errors():
    with pytest.raises(ConfigError, match="approximate_sync_slop_s"):
        SyncConfig(approximate_sync_slop_s=0)
    with pytest.raises(ConfigError, match="queue_size"):
        SyncConfig(queue_size=0)
