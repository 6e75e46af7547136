"""Automatic shift: recovered on real pairs, left alone where the homography is right, robust to one odd frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusion_ros.errors import ConfigError
from fusion_ros.pipeline.auto_align import AutoAligner, estimate_shift, shifted_homography
from fusion_ros.pipeline.fuser import Fuser, FuserConfig
from fusion_ros.pipeline.registration import IDENTITY

DEV = ("flir", "msrs", "roadscene", "tno")


class Blend:
    """A 50/50 blend as the network: what the pipeline does around it is what these tests look at."""

    def infer(self, t, v, use_memory=True):
        return 0.5 * t + 0.5 * v

    def reset_memory(self):
        pass


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The thermal frame of a rig whose homography is off by (dx, dy): content moved right/down."""
    mat = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, mat, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def dev_pairs(shared_dir):
    from fusion_ros.io.images import read_ir, read_vis
    from fusion_ros.io.pairs import find_pairs

    pairs = {}
    for name in DEV:
        out = []
        for p in find_pairs(shared_dir / "data" / "pairs" / "dev" / name):
            rgb = read_vis(p.vi_path)
            th = read_ir(p.ir_path)
            out.append((cv2.resize(th, rgb.shape[1::-1]) if th.shape != rgb.shape[:2] else th, rgb, p.key))
        pairs[name] = out
    return pairs


def test_a_known_shift_of_real_pairs_is_recovered(dev_pairs):
    """The estimate moves with the thermal image: shifted minus unshifted estimate = the shift, on every dataset."""
    errors = {}
    for name, pairs in dev_pairs.items():
        errs = []
        for i, (th, rgb, _) in enumerate(pairs):
            d = ((4.0, 4.0), (-7.0, 3.0), (12.0, -9.5))[i % 3]
            base = estimate_shift(th, rgb, IDENTITY)
            moved = estimate_shift(_shift(th, *d), rgb, IDENTITY)
            errs.append(np.hypot(moved.dx - base.dx - d[0], moved.dy - base.dy - d[1]))
        errors[name] = (float(np.median(errs)), float(np.mean(np.asarray(errs) < 1.0)))
    print("recovery error median px, share within 1 px:", {k: (round(a, 2), round(b, 2)) for k, (a, b) in errors.items()})
    for name, (median, within) in errors.items():
        assert median < 0.3, name
        assert within >= 0.85, name


def test_aligned_pairs_keep_their_registration_and_shifted_ones_are_corrected(dev_pairs):
    """The guard: on the aligned dev pairs the best shift rarely beats no shift by the margin; at 12 px it does."""
    used = {0: [], 4: [], 12: []}
    moved_aligned = {}
    for pairs in dev_pairs.values():
        for th, rgb, key in pairs:
            for px in used:
                aligner = AutoAligner()
                shift = aligner.update(_shift(th, px, px) if px else th, rgb, IDENTITY)
                used[px].append(shift != (0.0, 0.0))
                if px == 0 and shift != (0.0, 0.0):
                    moved_aligned[key] = round(float(np.hypot(*shift)), 1)
    share = {px: float(np.mean(v)) for px, v in used.items()}
    print("share of pairs shifted:", share, "aligned pairs moved (px):", moved_aligned)
    assert share[0] <= 0.10
    assert share[4] >= 0.70
    assert share[12] >= 0.90


def test_the_fuser_undoes_a_shift_of_a_real_pair(dev_pairs):
    """With a 50/50 blend as the network, the fused image of a shifted pair comes back near that of the aligned pair
    (not exactly onto it: the shift found lines up the edges, which need not be the dataset's own registration)."""
    th, rgb, _ = dev_pairs["roadscene"][0]
    fused = {}
    for on in (False, True):
        fuser = Fuser(Blend(), FuserConfig(auto_align=on))
        ref = fuser.step(th, rgb).astype(np.float32)
        fuser.reset()
        moved = fuser.step(_shift(th, 8, -6), rgb).astype(np.float32)
        fused[on] = float(np.abs(moved - ref)[16:-16, 16:-16].mean())
        if on:
            assert fuser.shift_px != (0.0, 0.0)
            assert np.allclose(fuser.effective_homography, shifted_homography(IDENTITY, fuser.shift_px))
    print("mean |shifted - aligned| without / with the automatic shift:", fused)
    assert fused[True] < fused[False] / 2.5


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32), (0, 0), 3)
    return ((g - g.min()) / (g.max() - g.min()) * 255).astype(np.uint8)


def test_one_odd_frame_does_not_move_the_shift_and_estimates_follow_every():
    rgb_grey = _textured()
    rgb = np.repeat(rgb_grey[..., None], 3, 2)
    moved = _shift(rgb_grey, 6, 6)
    aligner = AutoAligner(every=2)
    for _ in range(6):
        aligner.update(moved, rgb, IDENTITY)
    assert aligner.estimates == 3
    assert np.allclose(aligner.shift, (6, 6), atol=0.3)
    flat = np.full_like(rgb_grey, 128)
    aligner.update(flat, rgb, IDENTITY)          # estimated: nothing to match, votes for no shift
    assert aligner.last is None
    assert np.allclose(aligner.shift, (6, 6), atol=0.3)
    aligner.reset()
    assert aligner.shift == (0.0, 0.0)


def test_a_shift_beyond_the_range_is_not_used():
    """Just beyond the range the best match sits on its border; far beyond it nothing matches: no shift either way."""
    rgb_grey = _textured(1)
    rgb = np.repeat(rgb_grey[..., None], 3, 2)
    near = estimate_shift(_shift(rgb_grey, 10, 0), rgb, IDENTITY, max_shift_px=8)
    far = estimate_shift(_shift(rgb_grey, 40, 0), rgb, IDENTITY, max_shift_px=8)
    assert near.at_limit and near.peak > 0.3, near
    assert far.peak < 0.1, far
    for dx in (10, 40):
        assert AutoAligner(max_shift_px=8).update(_shift(rgb_grey, dx, 0), rgb, IDENTITY) == (0.0, 0.0)


def test_a_too_small_image_has_no_estimate():
    assert estimate_shift(np.zeros((40, 50), np.uint8), np.zeros((40, 50, 3), np.uint8), IDENTITY) is None


@pytest.mark.parametrize("field,value", [("auto_align_max_px", 0.5), ("auto_align_min_gain", 1.5),
                                         ("auto_align_every", 0)])
def test_bad_settings_name_the_parameter(field, value):
    with pytest.raises(ConfigError, match=field):
        FuserConfig(**{field: value})


@pytest.mark.parametrize("thermal,rgb", [
    (np.zeros((1, 1), np.uint16), np.zeros((1, 1, 3), np.uint8)),
    (np.full((3, 2000), 7, np.uint16), np.zeros((5, 4000, 3), np.uint8)),
    (np.full((60, 80), np.nan, np.float32), np.full((480, 640, 3), 90, np.uint8)),
    (np.full((60, 80), 0.5, np.float32), _textured(2)[..., None].repeat(3, 2)),
], ids=["1x1", "a sliver", "NaN thermal", "flat thermal"])
def test_odd_frames_are_fused_as_registered(thermal, rgb):
    """Frames the estimate cannot use still fuse, with no shift."""
    fuser = Fuser(Blend())
    assert fuser.step(thermal, rgb).shape == rgb.shape
    assert fuser.shift_px == (0.0, 0.0)
