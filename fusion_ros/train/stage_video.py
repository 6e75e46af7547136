"""Stage II: train the memory adapter and the output history on short clips, the image weights frozen.

Targets are the frozen stage-I student's per-frame output (``stage1_final.pt``, zero memory); the temporal term compares
each fused frame with the previous one warped by the reference DIS flow.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch

from fusion_ros.errors import FusionError
from fusion_ros.model import FusionStudent, rgb_to_luma
from fusion_ros.train import losses as L
from fusion_ros.train.checkpoint import RunState, load_weights
from fusion_ros.train.config import TrainConfig, resolve_path
from fusion_ros.train.data import find_clips
from fusion_ros.train.loop import Schedule, optimise, record_validation, trainable_only
from fusion_ros.train.run import Run, unwrap
from fusion_ros.train.sampling import ClipData
from fusion_ros.train.stage_images import TEMPORAL_MODULES, FeaturePanel, fused_luma, load_panel
from fusion_ros.train.teachers import cache_folder, load_stats

__all__ = ["frozen_stage1", "VideoLoss", "validate_video", "run_stage2"]

log = logging.getLogger(__name__)


def frozen_stage1(run: Run) -> FusionStudent:
    """A frozen copy of the student with the weights of ``stage1_final.pt`` (those of ``run.model`` when there is none)."""
    frozen = copy.deepcopy(run.model)
    load_weights(frozen, run.out / "stage1_final.pt")
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


@dataclass(frozen=True)
class VideoLoss:
    """The stage-II loss of a clip batch: per-frame fidelity to the frozen stage-I student, plus the temporal term."""

    cfg: TrainConfig
    device: torch.device
    frozen: FusionStudent                      # the stage-I student: the per-frame targets
    panel: FeaturePanel | None                 # used when video_w_mfm > 0

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Returns (total, {term: float}) over the clip's frames, the memory carried from frame to frame."""
        cfg = self.cfg
        th = batch["thermal"].to(self.device)       # (B, T, 1, c, c)
        vis = batch["visible"].to(self.device)
        ftb = batch["flow_tb"].to(self.device)
        fbt = batch["flow_bt"].to(self.device)
        b, t = th.shape[:2]
        mem = unwrap(model).zero_memory(th.shape[-2], th.shape[-1], b)
        sums = {"pix": 0.0, "ssim": 0.0, "grad": 0.0, "mfm": 0.0, "temporal": 0.0}
        prev = None
        for i in range(t):
            with torch.no_grad():
                tgt = fused_luma(self.frozen, th[:, i], vis[:, i])
            out, mem = model(th[:, i], vis[:, i], mem)
            y = rgb_to_luma(out)
            sums["pix"] = sums["pix"] + (y - tgt).abs().mean()
            sums["ssim"] = sums["ssim"] + L.l_ssim(y, tgt)
            if cfg.w_grad > 0:
                sums["grad"] = sums["grad"] + L.l_grad(y, L.sobel_magnitude(tgt))
            if self.panel is not None and cfg.video_w_mfm > 0:
                with torch.no_grad():
                    tf = self.panel.features(tgt, vis[:, i])
                sf = self.panel.features(y, vis[:, i])
                zeros = [torch.zeros_like(f[:, 0]) for f in sf]      # one target sample: no variance, uniform routing
                sums["mfm"] = sums["mfm"] + L.l_mfm(sf, tf, zeros, cfg.tau, cfg.mfm_margin)
            if prev is not None:
                mask = L.occlusion_mask(ftb[:, i - 1], fbt[:, i - 1])
                sums["temporal"] = sums["temporal"] + L.l_temporal(y, prev, ftb[:, i - 1], mask)
            prev = y
        terms = {k: v / (t - 1 if k == "temporal" else t) for k, v in sums.items() if not isinstance(v, float)}
        weights = {"pix": cfg.w_pix, "ssim": cfg.w_ssim, "grad": cfg.w_grad, "mfm": cfg.video_w_mfm, "temporal": cfg.w_temporal}
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}


@torch.no_grad()
def validate_video(model: torch.nn.Module, loss: VideoLoss, clips: ClipData) -> dict[str, float]:
    """Mean stage-II loss terms over the whole validation clips."""
    model.eval()
    sums: dict[str, float] = {}
    batches = clips.val_batches()
    for batch in batches:
        total, terms = loss(model, batch)
        terms["loss"] = float(total)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
    model.train()
    return {k: v / max(1, len(batches)) for k, v in sums.items()}


def _video_panel(run: Run) -> FeaturePanel | None:
    # Only the optional stage-II alignment term needs the panel; without a teacher cache (stage I never ran) it is off.
    if run.cfg.video_w_mfm == 0:
        return None
    try:
        stats = load_stats(cache_folder(run.cfg))
    except FusionError:
        stats = None
    return load_panel(run.cfg, stats, run.rt.device)


def run_stage2(run: Run, state: RunState, optimizer_state: dict | None = None) -> None:
    """Train stage II from ``run.model`` (after stage I: its result) for ``cfg.video_steps``; ``state`` enters stage II
    at step 0 unless it is already in it. ``optimizer_state`` continues an interrupted stage II."""
    cfg = run.cfg
    if not run.model.cfg.use_memory or run.model.adapter is None:
        log.warning("the model has no memory adapter (use_memory=false); stage II skipped")
        return
    sources = [c for root in cfg.video for c in find_clips(resolve_path(root))]
    clips = ClipData(sources, cfg, run.rt.rng, progress=run.rt.progress)
    log.info("stage II data: %d training clips, %d validation clips of %d frames", len(clips.train), len(clips.val), cfg.clip_len)
    loss = VideoLoss(cfg, run.rt.device, frozen_stage1(run), _video_panel(run))
    if state.stage != 2:
        state.stage, state.step, state.best_val2, state.wall_s = 2, 0, math.inf, 0.0

    def validate() -> None:
        if run.rt.is_main and clips.val:
            record_validation(run, state, 2, validate_video(run.model, loss, clips))

    # Image weights frozen: only the memory adapter (gate, attention, flow head, phi) and the output history train.
    with trainable_only(run.model, lambda name: name.startswith(TEMPORAL_MODULES)) as params:
        model = run.rt.wrap(run.model)
        opt = torch.optim.AdamW(params, lr=cfg.video_lr, weight_decay=cfg.weight_decay)
        if optimizer_state is not None:
            opt.load_state_dict(optimizer_state)
        steps_per_epoch = max(10, len(clips.train) // max(1, cfg.video_batch))
        validate()                                      # step 0 = the stage-I model with memory
        schedule = Schedule(cfg.video_steps, cfg.video_time_budget_min, cfg.video_lr,
                            min(cfg.warmup_steps, cfg.video_steps // 10), steps_per_epoch)
        optimise(run, state, 2, opt, params, schedule, loss=lambda prog: loss(model, clips.sample(cfg.video_batch)),
                 validate=validate)
    state.done["stage2"] = {"steps": state.step, "wall_s": round(state.wall_s, 1)}
