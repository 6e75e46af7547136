"""Registration estimate: known warps of real aligned frames, the live residual, the fits, a rendered board."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from fusion_ros.calibrate.benchmark import load_groups, misregister, render_board
from fusion_ros.pipeline.registration_estimate import EstimateConfig, InsufficientStructureError, corner_error, \
    estimate_homography, estimate_homography_checkerboard, estimate_residual, fit_model, random_homography

CLIPS = ("video/dev/0111_1753", "video/dev/0115_1831")


@pytest.fixture(scope="module")
def clips(shared_dir):
    return load_groups(shared_dir / "data", CLIPS, max_frames=2)


def test_known_warps_of_real_frames_are_recovered(clips):
    """2 frames per estimate: the warp is undone to a pixel, also against the bare known warp."""
    rng = np.random.default_rng(3)
    absolute, recovery = [], []
    for frames in clips.values():
        h_img, w_img = frames[0][0].shape
        plain = estimate_homography(frames).homography
        for _ in range(2):
            h_true = random_homography(rng, (w_img, h_img))
            est = estimate_homography([(misregister(th, h_true), rgb) for th, rgb in frames])
            assert est.frames_used == len(frames)
            absolute.append(corner_error(est.homography, h_true, (w_img, h_img)))
            recovery.append(corner_error(est.homography, plain @ h_true, (w_img, h_img)))
    print(f"corner error px: absolute {np.round(absolute, 2)}, recovery {np.round(recovery, 2)}")
    assert np.median(recovery) <= 1.5 and max(recovery) <= 3.0
    assert np.median(absolute) <= 2.0 and max(absolute) <= 3.0


def test_similarity_model_returns_a_similarity(clips):
    th, rgb = clips[CLIPS[0]][0]
    h_true = np.array([[1.02, -0.03, 12.0], [0.03, 1.02, -7.0], [0, 0, 1.0]])
    est = estimate_homography([(misregister(th, h_true), rgb)], EstimateConfig(model="similarity")).homography
    assert est[0, 0] == pytest.approx(est[1, 1]) and est[0, 1] == pytest.approx(-est[1, 0])
    assert np.allclose(est[2], [0, 0, 1])
    assert corner_error(est, h_true, (th.shape[1], th.shape[0])) < 3.0


def test_residual_reads_an_injected_shift(clips):
    for th, rgb in (clips[c][0] for c in CLIPS):
        base = estimate_residual(th, rgb, np.eye(3))
        assert base < 2.5
        for shift in (5.0, 12.0, 25.0):
            h = np.array([[1, 0, 0.6 * shift], [0, 1, -0.8 * shift], [0, 0, 1.0]])
            assert estimate_residual(th, rgb, h) == pytest.approx(shift, abs=2.0)


def test_residual_is_fast_and_nan_without_structure(clips):
    th, rgb = clips[CLIPS[0]][0]
    estimate_residual(th, rgb, np.eye(3))
    t0 = time.perf_counter()
    for _ in range(5):
        estimate_residual(th, rgb, np.eye(3))
    per_call = (time.perf_counter() - t0) / 5
    assert per_call < 0.1, f"{per_call * 1e3:.0f} ms per call at 640x480"   # ~10 ms idle; margin for a busy CI
    flat = np.full((480, 640), 0.5, np.float32)
    assert math.isnan(estimate_residual(flat, np.full((480, 640, 3), 128, np.uint8), np.eye(3)))


def test_flat_scenes_give_the_structure_error():
    rng = np.random.default_rng(0)
    frames = [(np.full((120, 160), 0.4, np.float32), (rng.random((120, 160, 3)) * 20 + 100).astype(np.uint8))
              for _ in range(3)]
    with pytest.raises(InsufficientStructureError, match="enough structure seen by both cameras"):
        estimate_homography(frames)


def test_a_frame_that_matches_nothing_is_not_used(clips):
    """Thermal of one clip with RGB of another: real structure in both, no true match; it must not be averaged in."""
    a, b = clips["video/dev/0111_1753"], clips["video/dev/0115_1831"]
    alone = estimate_homography([a[0]])
    result = estimate_homography([a[0], (b[0][0], a[1][1])])
    assert result.reasons == ["", "no match"] and result.frames[1].correlation < EstimateConfig().min_correlation
    # OpenCV's threaded reductions are not bit-exact run to run (~1e-5 px); a frame averaged in moves pixels.
    assert corner_error(result.homography, alone.homography, (640, 480)) < 1e-3
    with pytest.raises(InsufficientStructureError, match="correlating"):
        estimate_homography([(b[0][0], a[1][1])])


def test_a_frame_stuck_in_a_wrong_optimum_is_restarted_from_the_consensus(shared_dir):
    """Two night-street pairs misregistered by a zoom and shift: the first one's own search ends ~20 px off; the
    refinement pass restarts it from the combined estimate, where its edges correlate more."""
    frames = [load_groups(shared_dir / "data", ("pairs/dev/msrs",))["pairs/dev/msrs"][i] for i in (0, 2)]
    rng = np.random.default_rng(0)
    random_homography(rng, (640, 480))
    h_true = random_homography(rng, (640, 480))      # a zoom of 1.08 and a shift of (36, -16) px
    raw = [(misregister(th, h_true), rgb) for th, rgb in frames]
    errors, first = {}, {}
    for passes in (0, 1):
        cfg = EstimateConfig(refine_passes=passes)
        est, plain = estimate_homography(raw, cfg), estimate_homography(frames, cfg)
        errors[passes] = corner_error(est.homography, plain.homography @ h_true, (640, 480))
        first[passes] = est.frames[0].correlation
    print(f"recovery px without / with the refinement pass: {errors[0]:.2f} / {errors[1]:.2f}; "
          f"first frame's correlation {first[0]:.3f} / {first[1]:.3f}")
    assert first[1] > first[0] + 0.02
    assert errors[1] < 0.6 * errors[0]


@pytest.mark.parametrize("model", ["homography", "affine", "similarity"])
def test_fit_model_is_exact_on_its_own_family(model):
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 640, (30, 2))
    h = {"homography": np.array([[1.03, 0.02, 5.0], [-0.01, 0.98, -3.0], [2e-5, -1e-5, 1.0]]),
         "affine": np.array([[1.03, 0.02, 5.0], [-0.01, 0.98, -3.0], [0, 0, 1.0]]),
         "similarity": np.array([[0.99, -0.05, 5.0], [0.05, 0.99, -3.0], [0, 0, 1.0]])}[model]
    dst = cv2.perspectiveTransform(src.reshape(-1, 1, 2), h).reshape(-1, 2)
    assert np.allclose(fit_model(src, dst, model), h, atol=1e-6)


def test_checkerboard_recovers_a_known_homography():
    size, board = (320, 240), (6, 4)
    h_true = np.array([[0.97, 0.03, 9.0], [-0.02, 1.01, -6.0], [1e-5, 2e-5, 1.0]])
    pairs = []
    for dx, dy in ((60, 40), (90, 60), (40, 70)):
        pose = np.array([[0.9, 0.05, dx], [-0.04, 0.9, dy], [0, 0, 1.0]])
        rgb = (np.repeat(render_board(size, board, pose)[..., None], 3, 2) * 255).astype(np.uint8)
        # what the thermal camera (misregistered by h_true) records of the same board: inverted polarity
        thermal = render_board(size, board, np.linalg.inv(h_true) @ pose, invert=True)
        pairs.append((thermal, rgb))
    h, det, reasons, got_size = estimate_homography_checkerboard(pairs, board)
    assert reasons == ["", "", ""] and got_size == size
    assert corner_error(h, h_true, size) < 0.5
