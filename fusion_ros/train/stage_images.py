"""Stage I: distil the cached teacher ensemble into the image model, on still crops with zero memory.

The memory adapter and the output history stay frozen here (:data:`TEMPORAL_MODULES`); the result is the best
validation checkpoint, written as ``stage1_final.pt`` for stage II to start from and distil.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from fusion_ros.model import rgb_to_luma
from fusion_ros.train import losses as L
from fusion_ros.train.augment import degrade_thermal, degrade_visible, misalign
from fusion_ros.train.checkpoint import RunState, load_weights, save_checkpoint
from fusion_ros.train.config import TrainConfig, resolve_path
from fusion_ros.train.data import find_pairs, split_pairs
from fusion_ros.train.loop import Schedule, optimise, record_validation, trainable_only
from fusion_ros.train.run import Run, unwrap
from fusion_ros.train.sampling import StageIData, pair_batch
from fusion_ros.train.teachers import PairTargets, build_cache, cache_folder, load_stats, load_targets

__all__ = ["TEMPORAL_MODULES", "FeaturePanel", "load_panel", "fused_luma", "ImageData", "load_image_data", "ImageLoss",
           "validate_images", "run_stage1"]

log = logging.getLogger(__name__)

# Parameters that only act on a non-zero memory: frozen in stage I, the only ones trained in stage II.
TEMPORAL_MODULES = ("adapter.", "history.")


@dataclass(frozen=True)
class FeaturePanel:
    """The frozen backbones of the alignment loss, each output divided by the cache's per-channel std."""

    backbones: torch.nn.ModuleList
    channel_std: list[torch.Tensor]            # (1, C, 1, 1) per backbone

    def features(self, y: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]:
        """Panel features of the fused luminance ``y`` (B,1,H,W) on the visible image ``vis`` (B,3,H,W)."""
        # The backbone sees the fused luminance on the clean visible chroma, as the teacher samples were rendered.
        rgb = (vis + (y - rgb_to_luma(vis))).clamp(0, 1)
        return [bb(rgb) / s for bb, s in zip(self.backbones, self.channel_std)]


def load_panel(cfg: TrainConfig, stats: dict | None, device: torch.device) -> FeaturePanel | None:
    """The panel of ``cfg.backbones`` with the std of the cache ``stats``; None when the alignment loss is off or unknown."""
    if not cfg.backbones or cfg.w_mfm == 0 or stats is None:
        return None
    from fusion_ros.train.backbones import build_panel

    std = [torch.tensor(stats["backbones"][b]["channel_std"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
           for b in cfg.backbones]
    return FeaturePanel(build_panel(cfg.backbones).to(device), std)


def fused_luma(model: torch.nn.Module, th: torch.Tensor, vis: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Fused luminance (B,1,H,W) of a still image (zero memory); ``flip`` (B,) flips inputs and un-flips the output."""
    if flip is not None and bool(flip.any()):
        f4 = flip.view(-1, 1, 1, 1)
        th = torch.where(f4, th.flip(-1), th)
        vis = torch.where(f4, vis.flip(-1), vis)
    mem = unwrap(model).zero_memory(th.shape[-2], th.shape[-1], th.shape[0])
    out, _ = model(th, vis, mem)
    y = rgb_to_luma(out)
    if flip is not None and bool(flip.any()):
        y = torch.where(flip.view(-1, 1, 1, 1), y.flip(-1), y)
    return y


@dataclass(frozen=True)
class ImageData:
    """Stage-I data in memory: training crops, held-out pairs, the cache statistics."""

    train: StageIData
    val: list[PairTargets]
    stats: dict


def repeat_datasets(items: list[PairTargets], repeats: dict[str, int]) -> list[PairTargets]:
    """Each pair listed as often as its dataset's repeat count (the same objects: no extra memory)."""
    if not repeats:
        return items
    datasets = [it.key.rpartition("/")[0] for it in items]      # key = "<dataset>/<stem>"
    unknown = set(repeats) - set(datasets)
    if unknown:
        log.warning("dataset_repeats names datasets with no training pair: %s", ", ".join(sorted(unknown)))
    return [it for it, ds in zip(items, datasets) for _ in range(repeats.get(ds, 1))]


def load_image_data(run: Run) -> ImageData:
    """Build (or complete) the teacher cache on the main process, then load every pair with its targets."""
    cfg = run.cfg
    pairs = [p for root in cfg.pairs for p in find_pairs(resolve_path(root))]
    train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction)
    if run.rt.is_main:
        build_cache(cfg, pairs, progress=run.rt.progress)   # resumes; no-op when complete
    run.rt.barrier()
    folder = cache_folder(cfg)
    stats = load_stats(folder)
    load = lambda recs: [t for t in (load_targets(cfg, folder, r, stats) for r in recs) if t is not None]  # noqa: E731
    train_items, val_items = repeat_datasets(load(train_pairs), cfg.repeat_map()), load(val_pairs)
    if cfg.val_max_pairs:
        val_items = val_items[: cfg.val_max_pairs]
    log.info("stage I data: %d train pairs, %d validation pairs (cache %s)", len(train_items), len(val_items), folder)
    return ImageData(StageIData(train_items, cfg.crop, cfg.backbones, run.rt.rng), val_items, stats)


@dataclass(frozen=True)
class ImageLoss:
    """The stage-I loss of a batch: pixel, SSIM, edge and alignment terms against the cached teacher statistics."""

    cfg: TrainConfig
    device: torch.device
    gen: torch.Generator                       # flips, misalignment and degradations
    panel: FeaturePanel | None

    def _grad_target(self, th: torch.Tensor, vis: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        mode = self.cfg.grad_target
        src = torch.maximum(L.sobel_magnitude(th), L.sobel_magnitude(rgb_to_luma(vis)))
        if mode == "sources_max":
            return src
        tgt = L.sobel_magnitude(mean)
        return tgt if mode == "target" else torch.maximum(src, tgt)

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], augment: bool = True, margin: int | None = None,
                 degrade: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        """Returns (total, {term: float}). ``augment`` turns on flips and, with ``degrade``, the misalignment injection
        and the degradations."""
        cfg = self.cfg
        th = batch["thermal"].to(self.device)
        vis = batch["visible"].to(self.device)
        mean = batch["mean"].to(self.device)
        var = batch["var"].to(self.device)
        th_in, vis_in, flip = th, vis, None
        if augment and degrade:
            th_in = degrade_thermal(misalign(th.cpu(), cfg, self.gen), cfg, self.gen).to(self.device)
            vis_in = degrade_visible(vis.cpu(), cfg, self.gen).to(self.device)
        if augment:
            flip = (torch.rand(th.shape[0], generator=self.gen) < cfg.flip_prob).to(self.device)
        y = fused_luma(model, th_in, vis_in, flip)
        terms: dict[str, torch.Tensor] = {}
        terms["pix"] = L.l_pix(y, mean, var, cfg.pix_eps)
        terms["ssim"] = L.l_ssim(y, mean)
        if cfg.w_grad > 0:
            terms["grad"] = L.l_grad(y, self._grad_target(th, vis, mean))
        if self.panel is not None and batch.get("feats"):
            # A sub-batch through the panel: an unbiased estimate of the batch mean at a fraction of the cost.
            n = cfg.mfm_batch if augment and cfg.mfm_batch else y.shape[0]
            sf = self.panel.features(y[:n], vis[:n])
            terms["mfm"] = L.l_mfm(sf, [f[:n].to(self.device) for f in batch["feats"]], [v[:n].to(self.device) for v in batch["fvar"]],
                                   cfg.tau, cfg.mfm_margin if margin is None else margin)
        weights = {"pix": cfg.w_pix, "ssim": cfg.w_ssim, "grad": cfg.w_grad, "mfm": cfg.w_mfm}
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}


@torch.no_grad()
def validate_images(model: torch.nn.Module, loss: ImageLoss, val_items: list[PairTargets]) -> dict[str, float]:
    """Mean stage-I loss terms (+ plain ``l1`` to the ensemble mean) over the held-out pairs, no augmentation."""
    cfg = loss.cfg
    model.eval()
    sums: dict[str, float] = {}
    for it in val_items:
        batch = pair_batch(it, cfg.val_crop, cfg.backbones)
        total, terms = loss(model, batch, augment=False, margin=0 if not cfg.val_crop else None)
        terms["loss"] = float(total)
        terms["l1"] = float((fused_luma(model, batch["thermal"].to(loss.device), batch["visible"].to(loss.device))
                             - batch["mean"].to(loss.device)).abs().mean())
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
    model.train()
    return {k: v / max(1, len(val_items)) for k, v in sums.items()}


def run_stage1(run: Run, state: RunState, optimizer_state: dict | None = None) -> None:
    """Train stage I from ``state.step`` to ``cfg.steps`` (or its time budget); ``run.model`` ends as the best validation
    checkpoint, also written as ``stage1_final.pt``. ``optimizer_state`` continues an interrupted stage I."""
    cfg = run.cfg
    data = load_image_data(run)
    loss = ImageLoss(cfg, run.rt.device, run.rt.gen, load_panel(cfg, data.stats, run.rt.device))

    def validate() -> None:
        if run.rt.is_main and data.val:
            record_validation(run, state, 1, validate_images(run.model, loss, data.val))

    # Stage I runs with zero memory, where the memory adapter adds exactly nothing (K = V = 0) and the output
    # history is switched off by its validity channel: keep both out
    # of the optimiser (and of DDP's gradient reduction, which rejects parameters without gradients).
    with trainable_only(run.model, lambda name: not name.startswith(TEMPORAL_MODULES)) as params:
        model = run.rt.wrap(run.model)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if optimizer_state is not None:
            opt.load_state_dict(optimizer_state)
        steps_per_epoch = max(1, len(data.train) * cfg.crops_per_pair // (cfg.batch_size * run.rt.world))
        schedule = Schedule(cfg.steps, cfg.time_budget_min, cfg.lr, cfg.warmup_steps, steps_per_epoch)
        optimise(run, state, 1, opt, params, schedule,
                 loss=lambda prog: loss(model, data.train.sample(cfg.batch_size), degrade=prog < cfg.augment_until),
                 validate=validate)
    state.done["stage1"] = {"steps": state.step, "wall_s": round(state.wall_s, 1)}
    if run.rt.is_main:
        # The stage-I result is the best validation checkpoint; stage II starts from (and distils) it.
        load_weights(run.model, run.out / "best_stage1.pt")
        save_checkpoint(run, "stage1_final.pt", state)
