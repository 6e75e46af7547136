"""Each stage on its own, two steps on tiny shared data: what it trains, what it leaves in out_dir; Ctrl-C in the loop."""

from __future__ import annotations

import pytest
import torch

from fusion_ros.train.checkpoint import RunState
from fusion_ros.train.config import TrainConfig
from fusion_ros.train.loop import Schedule, optimise
from fusion_ros.train.run import open_run
from fusion_ros.train.stage_images import TEMPORAL_MODULES, run_stage1
from fusion_ros.train.stage_video import run_stage2


@pytest.fixture
def tiny_cfg(tmp_path, shared_dir, roadscene_pairs):
    """``make(**overrides)``: a lite run of 2 + 2 steps on 2 pairs and one dev clip at quarter size, no backbone panel."""
    pairs = roadscene_pairs(2)

    def make(**overrides) -> TrainConfig:
        base = dict(pairs=(str(pairs),), cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "run"), backbones=(),
                    w_mfm=0.0, crop=64, batch_size=2, val_fraction=0.0, steps=2, warmup_steps=0, log_every=1,
                    video=(str(shared_dir / "data" / "video" / "dev" / "0111_1753"),), video_steps=2, clip_len=3,
                    clips_per_video=1, video_scale=0.25, video_crop=64, video_batch=1, video_val_fraction=0.3, seed=0)
        return TrainConfig(**{**base, **overrides})

    return make


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> tuple[set[str], set[str]]:
    """(image, temporal) parameter names whose values moved."""
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    temporal = {n for n in moved if n.startswith(TEMPORAL_MODULES)}
    return moved - temporal, temporal


def _train_steps(out) -> list[tuple[int, int]]:
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    return [(int(r[1]), int(r[2])) for r in rows if r[3] == "train"]


def test_stage_one_alone_trains_the_image_weights_and_writes_its_result(tiny_cfg) -> None:
    run = open_run(tiny_cfg(video_steps=0), progress=False)
    before = _snapshot(run.model)
    state = RunState()
    run_stage1(run, state)
    assert state.step == 2 and state.done["stage1"]["steps"] == 2
    image, temporal = _changed(before, run.model)
    assert image and not temporal, temporal
    assert all(p.requires_grad for p in run.model.parameters()), "every parameter trains again after the stage"
    final = torch.load(run.out / "stage1_final.pt", map_location="cpu", weights_only=False)
    assert final["stage"] == 1 and final["step"] == 2
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in final["state_dict"].items())
    assert _train_steps(run.out) == [(1, 1), (1, 2)]


def test_stage_two_alone_trains_the_memory_only(tiny_cfg) -> None:
    run = open_run(tiny_cfg(steps=0), progress=False)
    before = _snapshot(run.model)
    state = RunState()
    run_stage2(run, state)
    assert (state.stage, state.step) == (2, 2) and state.done["stage2"]["steps"] == 2
    image, temporal = _changed(before, run.model)
    assert temporal and not image, image
    assert [h["step"] for h in state.history if h["stage"] == 2] == [0, 2]     # the stage-I model first, then the end
    assert (run.out / "best_stage2.pt").is_file() and state.best_val2 == min(h["loss"] for h in state.history)
    assert _train_steps(run.out) == [(2, 1), (2, 2)]


def test_ctrl_c_in_the_loop_writes_last_pt_at_the_step_reached(tiny_cfg) -> None:
    run = open_run(tiny_cfg(), progress=False)
    params = list(run.model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    calls = []

    def loss(progress: float):
        calls.append(progress)
        if len(calls) == 3:
            raise KeyboardInterrupt
        total = sum((p ** 2).sum() for p in params)
        return total, {"pix": float(total.detach())}

    state = RunState()
    with pytest.raises(KeyboardInterrupt):
        optimise(run, state, 1, opt, params, Schedule(steps=10, budget_min=0.0, peak_lr=1e-3, warmup=0, steps_per_epoch=100),
                 loss, validate=lambda: None)
    assert state.step == 2 and calls == [0.0, 0.1, 0.2]
    blob = torch.load(run.out / "last.pt", map_location="cpu", weights_only=False)
    assert blob["step"] == 2 and "optimizer" in blob
    assert not list(run.out.glob("*.tmp")), "the checkpoint is renamed into place"
