"""Known-answer checks of the per-region teacher selection target (fusion_ros.train.targets)."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.eval import metrics as M
from fusion_ros.train.config import TrainConfig, resolve_path
from fusion_ros.train.targets import SelectParams, parse_select_params, select_target, selection_weights, source_lumas

H = W = 64


def _texture(seed: int) -> np.ndarray:
    """Smooth random texture in [0.2, 0.8] (float32)."""
    x = cv2.GaussianBlur(np.random.default_rng(seed).random((H, W), dtype=np.float32), (0, 0), 1.5)
    return (0.2 + 0.6 * (x - x.min()) / (x.max() - x.min())).astype(np.float32)


@pytest.fixture(scope="module")
def split_scene():
    """Visible structure only in the left half, thermal structure only in the right half; teacher A keeps the
    visible (left) and is flat on the right, teacher B is flat on the left and keeps the thermal (right)."""
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    vis = np.where(left, _texture(1), 0.5).astype(np.float32)
    ir = np.where(left, 0.5, _texture(2)).astype(np.float32)
    a = np.where(left, vis, 0.5).astype(np.float32)
    b = np.where(left, 0.5, ir).astype(np.float32)
    ideal = np.where(left, vis, ir).astype(np.float32)
    return ir, vis, np.stack([a, b]), ideal


def test_picks_per_region(split_scene):
    ir, vis, ys, ideal = split_scene
    tgt, w = select_target(ys, ir, vis, SelectParams(window=5, tau=0.0, blend="pixel"))
    inner_l, inner_r = (slice(4, -4), slice(4, W // 2 - 6)), (slice(4, -4), slice(W // 2 + 6, -4))
    assert (w[0][inner_l] == 1).all() and (w[1][inner_r] == 1).all()
    np.testing.assert_array_equal(tgt[inner_l], ideal[inner_l])
    np.testing.assert_array_equal(tgt[inner_r], ideal[inner_r])


@pytest.mark.parametrize("params", [SelectParams(), SelectParams(measure="ssim", window=7, tau=0.01),
                                    SelectParams(measure="vif", window=5), SelectParams(measure="edge", window=9)])
def test_selection_beats_each_teacher_and_the_mean(split_scene, params):
    ir, vis, ys, _ = split_scene
    tgt, _ = select_target(ys, ir, vis, params)
    u8 = lambda x: np.rint(np.asarray(x) * 255.0)  # noqa: E731
    q = lambda f: M.qabf(u8(f), u8(ir), u8(vis))  # noqa: E731
    assert q(tgt) > max(q(ys[0]), q(ys[1]), q(ys.mean(0))) + 0.1


@pytest.mark.parametrize("blend", ["pixel", "pyramid"])
def test_one_teacher_or_identical_teachers_give_that_teacher(split_scene, blend):
    ir, vis, ys, _ = split_scene
    tgt, w = select_target(ys[:1], ir, vis, SelectParams(blend=blend))
    np.testing.assert_array_equal(tgt, ys[0])
    assert (w == 1).all()
    tgt, w = select_target(np.stack([ys[1]] * 3), ir, vis, SelectParams(blend=blend, tau=0.05))
    np.testing.assert_allclose(tgt, ys[1], atol=1e-5)
    np.testing.assert_allclose(w, 1.0 / 3, atol=1e-6)


def test_deterministic_and_weights_sum_to_one(split_scene):
    ir, vis, ys, _ = split_scene
    noisy = np.clip(ys + 0.05 * np.random.default_rng(3).standard_normal(ys.shape).astype(np.float32), 0, 1)
    one = select_target(noisy, ir, vis)
    two = select_target(noisy.copy(), ir.copy(), vis.copy())
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_allclose(one[1].sum(0), 1.0, atol=1e-5)
    assert 0.0 <= one[0].min() and one[0].max() <= 1.0


def test_temperature_limits_and_prior():
    scores = np.array([[[0.1, 0.5]], [[0.3, 0.2]]], np.float32)           # (2 teachers, 1, 2)
    np.testing.assert_array_equal(selection_weights(scores, 0.0), [[[0, 1]], [[1, 0]]])
    np.testing.assert_allclose(selection_weights(scores, 1e6), 0.5, atol=1e-5)
    # A teacher with prior weight 0 is never chosen, even where it scores best.
    np.testing.assert_array_equal(selection_weights(scores, 0.0, prior=[1.0, 0.0]), [[[1, 1]], [[0, 0]]])
    np.testing.assert_allclose(selection_weights(scores, 1e6, prior=[3.0, 1.0]), [[[0.75, 0.75]], [[0.25, 0.25]]], atol=1e-5)


def test_source_lumas_bt601():
    ir = np.full((2, 2, 3), 51, np.uint8)
    vis = np.zeros((2, 2, 3), np.uint8)
    vis[..., 1] = 255
    t, v = source_lumas(ir, vis)
    np.testing.assert_allclose(t, 0.2, atol=1e-6)
    np.testing.assert_allclose(v, 0.587, atol=1e-6)


def test_bad_parameters_name_the_key():
    with pytest.raises(ConfigError, match="select_window"):
        SelectParams(window=4)
    with pytest.raises(ConfigError, match="select_measure"):
        SelectParams(measure="edge+mi")
    with pytest.raises(ConfigError, match="select_tau"):
        SelectParams(tau=-1)
    with pytest.raises(ConfigError, match="key=value"):
        parse_select_params("windw=9")
    with pytest.raises(ConfigError, match="tau"):
        parse_select_params("tau=high")
    assert parse_select_params("tau=0,window=15,measure=ssim,blend=pixel") == SelectParams("ssim", 15, 0.0, "pixel")
    with pytest.raises(ShapeError, match="match"):
        select_target(np.zeros((2, 8, 8)), np.zeros((8, 9)), np.zeros((8, 8)))


def test_config_target_option_and_default_cache_key_unchanged():
    from fusion_ros.train.teachers import cache_folder

    with pytest.raises(ConfigError, match="target='median'"):
        TrainConfig(target="median")
    with pytest.raises(ConfigError, match="select_window"):
        TrainConfig(target="select", select_window=8)
    cfg = TrainConfig()
    assert cfg.target == "mean"
    # The mean target keeps the cache identity it had before the target option existed.
    ident = json.dumps({"v": 1, "teachers": cfg.teacher_weight_map(), "split": cfg.teacher_split,
                        "teachers_root": str(resolve_path(cfg.teachers_root)), "backbones": list(cfg.backbones)},
                       sort_keys=True)
    assert cache_folder(cfg).name == hashlib.sha1(ident.encode()).hexdigest()[:10]
    sel = TrainConfig(target="select")
    assert cache_folder(sel) != cache_folder(cfg)
    assert cache_folder(TrainConfig(target="select", select_tau=0.05)) != cache_folder(sel)


def test_pool_weights_keep_regions_and_sum_to_one():
    from fusion_ros.train.targets import pool_weights

    w = np.zeros((2, 16, 16), np.float32)
    w[0, :, :8] = 1
    w[1, :, 8:] = 1
    p = pool_weights(w, (2, 2))
    np.testing.assert_allclose(p, [[[1, 0], [1, 0]], [[0, 1], [0, 1]]])


@pytest.mark.parametrize("target", ["mean", "select"])
def test_cache_holds_the_target_eval_computes(tmp_path, shared_dir, target):
    """The cached training target of a real pair is the mean, or select_target of the same teacher files."""
    from fusion_ros.train.data import find_pairs
    from fusion_ros.train.teachers import build_cache, cache_folder

    src = shared_dir / "data" / "pairs" / "dev" / "tno"
    for sub in ("ir", "vi"):
        (tmp_path / "pairs" / "tno" / sub).mkdir(parents=True)
        (tmp_path / "pairs" / "tno" / sub / "05.png").symlink_to(src / sub / "05.png")
    cfg = TrainConfig(pairs=(str(tmp_path / "pairs"),), teacher_split="dev", backbones=(), w_mfm=0.0,
                      cache_dir=str(tmp_path / "cache"), target=target, select_tau=0.0)
    recs = find_pairs(tmp_path / "pairs")
    build_cache(cfg, recs, progress=False)
    with np.load(cache_folder(cfg) / "tno" / "05.npz") as z:
        cached, var = z["mean"].astype(np.float32), z["var"].astype(np.float32)
    teachers = shared_dir / "data" / "teachers"
    ys = np.stack([cv2.imread(str(teachers / t / "dev" / "tno" / "05.png"), cv2.IMREAD_GRAYSCALE)
                   for t in cfg.teachers]).astype(np.float32) / 255.0
    if target == "mean":
        want = ys.mean(0)
    else:
        ir = cv2.imread(str(src / "ir" / "05.png"), cv2.IMREAD_GRAYSCALE)
        vis = cv2.cvtColor(cv2.imread(str(src / "vi" / "05.png")), cv2.COLOR_BGR2RGB)
        want, w = select_target(ys, *source_lumas(ir, vis), cfg.select_params())
        assert 0.05 < w[0].mean() < 0.95            # both teachers are picked somewhere
        np.testing.assert_allclose(var, (w * (ys - want) ** 2).sum(0), atol=2e-3)
    np.testing.assert_allclose(cached, want, atol=1e-3)   # float16 storage
