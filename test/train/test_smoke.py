"""Smoke test: train lite for a few steps on a handful of shared pairs, the loss falls, ONNX comes out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_ros.train.checkpoint import RunState
from fusion_ros.train.config import TrainConfig
from fusion_ros.train.run import open_run
from fusion_ros.train.stage_images import ImageLoss, load_image_data, load_panel, validate_images
from fusion_ros.train.trainer import export, fit

pytestmark = pytest.mark.onnx


def test_train_lite_few_steps_loss_falls_and_exports(tmp_path, shared_dir, roadscene_pairs):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime checks the exported model")
    torch.set_num_threads(2)
    cfg = TrainConfig(
        pairs=(str(roadscene_pairs(6)),), cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "run"),
        backbones=("ssd_mnv2",), crop=96, batch_size=4, mfm_batch=0, steps=40, warmup_steps=10, lr=2e-3,
        val_fraction=0.34, val_crop=128, crops_per_pair=20, flip_prob=0.0, misalign_prob=0.0,
        p_noise=0.0, p_blur=0.0, p_lowlight=0.0, p_haze=0.0, p_glare=0.0, p_rain=0.0, p_tblur=0.0, p_stripe=0.0,
        video=(str(shared_dir / "data" / "video" / "dev"),), video_steps=3, clip_len=6, clips_per_video=1,
        video_scale=0.25, video_crop=96, video_batch=1, video_val_fraction=0.3, ckpt_every=20, seed=1)
    run = open_run(cfg, progress=False)
    data = load_image_data(run)
    assert data.val, "the split must hold out at least one pair"
    loss = ImageLoss(cfg, run.rt.device, run.rt.gen, load_panel(cfg, data.stats, run.rt.device))
    before = validate_images(run.model, loss, data.val)
    state = fit(run)
    after = validate_images(run.model, loss, data.val)
    assert after["loss"] < 0.9 * before["loss"], (before, after)
    assert after["pix"] < before["pix"]
    onnx_path = export(run, state, wall_s=0.0)

    # Checkpoints, metrics and the export.
    out = tmp_path / "run"
    for name in ("last.pt", "best_stage1.pt", "stage1_final.pt", "metrics.csv", "train.yaml"):
        assert (out / name).is_file(), name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("time_s,stage,step") and any(",2," in r for r in rows[1:])   # stage II ran
    assert onnx_path.is_file() and onnx_path.with_suffix(".json").is_file() and onnx_path.with_suffix(".pt").is_file()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    h, w = 40, 56
    mem = np.zeros(run.model.cfg.memory_shape(h, w), np.float32)
    fused, _ = sess.run(None, {"thermal": np.full((1, 1, h, w), 0.8, np.float32),
                               "visible": np.full((1, 3, h, w), 0.2, np.float32), "memory": mem})
    assert fused.shape == (1, 3, h, w) and np.isfinite(fused).all()


def test_resume_continues_from_the_checkpoint(tmp_path, roadscene_pairs):
    base = dict(pairs=(str(roadscene_pairs(3)),), cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "run"),
                backbones=(), w_mfm=0.0, crop=64, batch_size=2, val_fraction=0.0, video_steps=0, ckpt_every=3, warmup_steps=0,
                log_every=1)
    assert fit(open_run(TrainConfig(steps=3, **base), progress=False)).step == 3
    blob = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert blob["step"] == 3 and "optimizer" in blob
    state: RunState = fit(open_run(TrainConfig(steps=5, **base), progress=False), resume=True)
    assert state.step == 5
    rows = [r.split(",") for r in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r[2]) for r in rows if r[3] == "train"] == [1, 2, 3, 4, 5]   # steps 4-5 continue, none repeated
