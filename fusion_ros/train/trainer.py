"""Training loop: stage I (images, teacher distillation) then stage II (video, memory adapter).

Engineering: deterministic seeds, tqdm with the loss terms, ``metrics.csv``, validation on a held-out
split every epoch with best-checkpoint selection, checkpoints every ``ckpt_every`` steps and on
Ctrl-C, ``resume=True`` continues from ``<out_dir>/last.pt``, DDP when launched by ``torchrun``
(``WORLD_SIZE`` > 1; single-process runs never touch ``torch.distributed``), ONNX export at the end.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from fusion_ros.config import to_dict
from fusion_ros.errors import FusionError
from fusion_ros.model import FusionStudent, create_model, rgb_to_luma
from fusion_ros.train import losses as L
from fusion_ros.train.augment import degrade_thermal, degrade_visible, misalign
from fusion_ros.train.config import TrainConfig, config_dict, resolve_path
from fusion_ros.train.data import ClipSource, clip_length, find_clips, find_pairs, read_clip_frames, split_pairs
from fusion_ros.train.teachers import PairTargets, build_cache, load_stats, load_targets

__all__ = ["Trainer", "train", "StageIData", "ClipData"]

log = logging.getLogger(__name__)

# Parameters that only act on a non-zero memory: frozen in stage I, the only ones trained in stage II.
TEMPORAL_MODULES = ("adapter.", "history.")


# --------------------------------------------------------------------------- data samplers

class StageIData:
    """Random aligned crops of cached pairs (crop origin on the 1/8 feature grid).

    Args:
        items: in-memory pairs with their targets.
        crop: square crop side in px (multiple of 8).
        backbones: names of the panel, in order.
        rng: numpy generator (per process).
    """

    def __init__(self, items: list[PairTargets], crop: int, backbones: tuple[str, ...], rng: np.random.Generator) -> None:
        self.items = [it for it in items if min(it.ir.shape) >= crop]
        skipped = len(items) - len(self.items)
        if skipped:
            log.warning("%d pairs are smaller than crop=%d px and are not used", skipped, crop)
        if not self.items:
            raise FusionError(f"no training pair is at least crop={crop} px on each side; lower 'crop'")
        self.crop = crop
        self.backbones = backbones
        self.rng = rng
        self._order: list[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def _next_index(self) -> int:
        if not self._order:
            self._order = list(self.rng.permutation(len(self.items)))
        return int(self._order.pop())

    def sample(self, batch: int) -> dict[str, Any]:
        """One batch: thermal (B,1,c,c), visible (B,3,c,c), mean/var (B,1,c,c), feats/fvar per backbone."""
        c, g = self.crop, self.crop // 8
        th, vi, mu, var = [], [], [], []
        feats: dict[str, list] = {b: [] for b in self.backbones}
        fvar: dict[str, list] = {b: [] for b in self.backbones}
        for _ in range(batch):
            it = self.items[self._next_index()]
            h, w = it.ir.shape
            gy = int(self.rng.integers(0, (h - c) // 8 + 1))
            gx = int(self.rng.integers(0, (w - c) // 8 + 1))
            y0, x0 = gy * 8, gx * 8
            th.append(it.ir[y0:y0 + c, x0:x0 + c])
            vi.append(it.vi[y0:y0 + c, x0:x0 + c])
            mu.append(it.mean[y0:y0 + c, x0:x0 + c])
            var.append(it.var[y0:y0 + c, x0:x0 + c])
            for b in self.backbones:
                feats[b].append(it.feats[b][:, gy:gy + g, gx:gx + g])
                fvar[b].append(it.fvar[b][gy:gy + g, gx:gx + g])
        out = {
            "thermal": torch.from_numpy(np.stack(th)).float().div_(255.0)[:, None],
            "visible": torch.from_numpy(np.stack(vi)).float().div_(255.0).permute(0, 3, 1, 2).contiguous(),
            "mean": torch.from_numpy(np.stack(mu).astype(np.float32))[:, None],
            "var": torch.from_numpy(np.stack(var).astype(np.float32))[:, None],
            "feats": [torch.from_numpy(np.stack(feats[b]).astype(np.float32)) for b in self.backbones],
            "fvar": [torch.from_numpy(np.stack(fvar[b]).astype(np.float32)) for b in self.backbones],
        }
        return out


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """OpenCV DIS flow (medium preset) from gray ``a`` to gray ``b``: ``a(x) ≈ b(x + flow(x))``. (H, W, 2) float32."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(a, b, None)


@dataclass
class _Clip:
    thermal: np.ndarray      # (T, H, W) uint8
    visible: np.ndarray      # (T, H, W, 3) uint8
    flow_tb: np.ndarray      # (T-1, H, W, 2) float16: flow from frame t to t-1 (t = 1..T-1)
    flow_bt: np.ndarray      # (T-1, H, W, 2) float16: flow from frame t-1 to t


class ClipData:
    """Short registered clips in memory with reference DIS flows on the visible luma.

    Clips are drawn from the first ``1 - val_fraction`` of each video for training and from the rest
    for validation, so the two never share frames.
    """

    def __init__(self, sources: list[ClipSource], cfg: TrainConfig, rng: np.random.Generator, progress: bool = True) -> None:
        from tqdm import tqdm
        import cv2

        self.cfg = cfg
        self.rng = rng
        self.train: list[_Clip] = []
        self.val: list[_Clip] = []
        span = (cfg.clip_len - 1) * cfg.clip_stride + 1
        for src in tqdm(sources, desc="video clips", disable=not progress, unit="video"):
            n = clip_length(src)
            n_train = int(n * (1 - cfg.video_val_fraction))
            starts_tr = self._starts(0, n_train - span, cfg.clips_per_video)
            starts_va = self._starts(n_train, n - span, max(1, cfg.clips_per_video // 8)) if cfg.video_val_fraction > 0 else []
            idx = sorted({s + k * cfg.clip_stride for s in starts_tr + starts_va for k in range(cfg.clip_len)})
            if not idx:
                log.warning("video %s has %d frames, too short for clip_len=%d", src.name, n, cfg.clip_len)
                continue
            th, vi = read_clip_frames(src, idx, cfg.video_scale)
            pos = {f: i for i, f in enumerate(idx)}
            for starts, store in ((starts_tr, self.train), (starts_va, self.val)):
                for s in starts:
                    sel = [pos[s + k * cfg.clip_stride] for k in range(cfg.clip_len)]
                    cth, cvi = th[sel], vi[sel]
                    gray = [cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) for v in cvi]
                    ftb = np.stack([dis_flow(gray[t], gray[t - 1]) for t in range(1, len(gray))]).astype(np.float16)
                    fbt = np.stack([dis_flow(gray[t - 1], gray[t]) for t in range(1, len(gray))]).astype(np.float16)
                    store.append(_Clip(cth, cvi, ftb, fbt))
        if not self.train:
            raise FusionError("no training clip could be built from the videos; check 'video' and clip_len")

    def _starts(self, lo: int, hi: int, count: int) -> list[int]:
        if hi < lo:
            return []
        return sorted(int(s) for s in self.rng.choice(np.arange(lo, hi + 1), size=min(count, hi - lo + 1), replace=False))

    @staticmethod
    def _crop(clip: _Clip, c: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        _, h, w = clip.thermal.shape
        c = min(c, h // 8 * 8, w // 8 * 8)
        if rng is None:
            y0, x0 = (h - c) // 2 // 8 * 8, (w - c) // 2 // 8 * 8
        else:
            y0, x0 = int(rng.integers(0, (h - c) // 8 + 1)) * 8, int(rng.integers(0, (w - c) // 8 + 1)) * 8
        sl = (slice(None), slice(y0, y0 + c), slice(x0, x0 + c))
        return {
            "thermal": torch.from_numpy(clip.thermal[sl].copy()).float().div_(255.0)[:, None],
            "visible": torch.from_numpy(clip.visible[sl].copy()).float().div_(255.0).permute(0, 3, 1, 2),
            "flow_tb": torch.from_numpy(clip.flow_tb[sl].astype(np.float32)).permute(0, 3, 1, 2),
            "flow_bt": torch.from_numpy(clip.flow_bt[sl].astype(np.float32)).permute(0, 3, 1, 2),
        }

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        """(B, T, C, c, c) thermal/visible and (B, T-1, 2, c, c) flows."""
        picks = [self.train[int(i)] for i in self.rng.integers(0, len(self.train), size=batch)]
        crops = [self._crop(p, self.cfg.video_crop, self.rng) for p in picks]
        return {k: torch.stack([c[k] for c in crops]) for k in crops[0]}

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        return [{k: v[None] for k, v in self._crop(c, 10 ** 6, None).items()} for c in self.val]


# --------------------------------------------------------------------------- trainer

@dataclass
class _State:
    stage: int = 1
    step: int = 0
    best_val: float = math.inf
    best_val2: float = math.inf
    wall_s: float = 0.0
    history: list = field(default_factory=list)
    done: dict = field(default_factory=dict)      # per stage: steps and wall seconds actually run


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float, progress: float | None = None) -> float:
    """Linear warm-up then cosine decay; ``progress`` in [0, 1] (e.g. from a time budget) overrides step/total."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup) if progress is None else progress
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _progress(step: int, total: int, elapsed_s: float, budget_min: float) -> float:
    """Share of the stage done: steps, or wall time when a budget is set (whichever is further)."""
    p = step / max(1, total)
    if budget_min > 0:
        p = max(p, elapsed_s / (60.0 * budget_min))
    return p


class Trainer:
    """Two-stage trainer. Use :func:`train` for the whole run.

    Args:
        cfg: training configuration.
        progress: tqdm bars on stderr.
    """

    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        if self.distributed:
            import torch.distributed as dist

            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        _seed_all(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1000 * self.rank)
        self.rng = np.random.default_rng(cfg.seed + 1000 * self.rank)
        self.out = resolve_path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model = self._build_model().to(self.device)
        self.state = _State()
        self.panel = None
        self.std: list[torch.Tensor] = []

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _build_model(self) -> FusionStudent:
        if self.cfg.init_checkpoint:
            from fusion_ros.export import load_student

            model = load_student(resolve_path(self.cfg.init_checkpoint), allow_new_modules=True)
            if model.cfg.name != self.cfg.model:
                raise FusionError(f"init_checkpoint is a '{model.cfg.name}' model but model='{self.cfg.model}'")
            return model.train()
        return create_model(self.cfg.model)

    # ---------------------------------------------------------------- helpers
    def _panel(self, stats: dict | None) -> None:
        if self.panel is not None or not self.cfg.backbones or self.cfg.w_mfm == 0:
            return
        from fusion_ros.train.backbones import build_panel

        self.panel = build_panel(self.cfg.backbones).to(self.device)
        if stats is not None:
            self.std = [torch.tensor(stats["backbones"][b]["channel_std"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
                        for b in self.cfg.backbones]

    def _student_feats(self, y: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]:
        # The backbone sees the fused luminance on the clean visible chroma, as the teacher samples were rendered.
        rgb = (vis + (y - rgb_to_luma(vis))).clamp(0, 1)
        return [bb(rgb) / s for bb, s in zip(self.panel, self.std)]

    def _grad_target(self, th: torch.Tensor, vis: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        mode = self.cfg.grad_target
        src = torch.maximum(L.sobel_magnitude(th), L.sobel_magnitude(rgb_to_luma(vis)))
        if mode == "sources_max":
            return src
        tgt = L.sobel_magnitude(mean)
        return tgt if mode == "target" else torch.maximum(src, tgt)

    def _forward(self, model, th: torch.Tensor, vis: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
        """Fused luminance (B,1,H,W) of a still image (zero memory); ``flip`` (B,) flips inputs and un-flips the output."""
        if flip is not None and bool(flip.any()):
            f4 = flip.view(-1, 1, 1, 1)
            th = torch.where(f4, th.flip(-1), th)
            vis = torch.where(f4, vis.flip(-1), vis)
        core = model.module if hasattr(model, "module") else model
        mem = core.zero_memory(th.shape[-2], th.shape[-1], th.shape[0])
        out, _ = model(th, vis, mem)
        y = rgb_to_luma(out)
        if flip is not None and bool(flip.any()):
            y = torch.where(flip.view(-1, 1, 1, 1), y.flip(-1), y)
        return y

    def stage1_loss(self, model, batch: dict[str, Any], augment: bool = True, margin: int | None = None,
                    degrade: bool = True) -> tuple[torch.Tensor, dict]:
        """Stage-I loss of a batch. Returns (total, {term: float}).

        ``augment`` turns on flips and, with ``degrade``, the misalignment injection and the degradations.
        """
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
        y = self._forward(model, th_in, vis_in, flip)
        terms: dict[str, torch.Tensor] = {}
        terms["pix"] = L.l_pix(y, mean, var, cfg.pix_eps)
        terms["ssim"] = L.l_ssim(y, mean)
        if cfg.w_grad > 0:
            terms["grad"] = L.l_grad(y, self._grad_target(th, vis, mean))
        if self.panel is not None and batch.get("feats"):
            # A sub-batch through the panel: an unbiased estimate of the batch mean at a fraction of the cost.
            n = cfg.mfm_batch if augment and cfg.mfm_batch else y.shape[0]
            sf = self._student_feats(y[:n], vis[:n])
            terms["mfm"] = L.l_mfm(sf, [f[:n].to(self.device) for f in batch["feats"]], [v[:n].to(self.device) for v in batch["fvar"]],
                                   cfg.tau, cfg.mfm_margin if margin is None else margin)
        weights = {"pix": cfg.w_pix, "ssim": cfg.w_ssim, "grad": cfg.w_grad, "mfm": cfg.w_mfm}
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    # ---------------------------------------------------------------- checkpoints
    def _ckpt(self, name: str, optimizer=None, extra: dict | None = None) -> Path:
        core = self.model.module if hasattr(self.model, "module") else self.model
        # "config" + "state_dict" is the export's weights format, so fusion_ros.export.load_student reads any checkpoint.
        blob = {"config": to_dict(core.cfg), "train_config": config_dict(self.cfg),
                "state_dict": core.state_dict(), "stage": self.state.stage, "step": self.state.step,
                "best_val": self.state.best_val, "best_val2": self.state.best_val2, "wall_s": self.state.wall_s, "history": self.state.history,
                "done": self.state.done,
                "torch_rng": torch.get_rng_state(), "gen": self.gen.get_state(), "np_rng": self.rng.bit_generator.state}
        if optimizer is not None:
            blob["optimizer"] = optimizer.state_dict()
        blob.update(extra or {})
        path = self.out / name
        tmp = path.with_suffix(".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)
        return path

    def _load_resume(self) -> dict | None:
        path = self.out / "last.pt"
        if not path.is_file():
            log.warning("--resume: no checkpoint at %s; starting fresh", path)
            return None
        blob = torch.load(path, map_location="cpu", weights_only=False)
        core = self.model.module if hasattr(self.model, "module") else self.model
        core.load_state_dict(blob["state_dict"])
        self.state = _State(blob["stage"], blob["step"], blob["best_val"], blob.get("best_val2", math.inf), blob.get("wall_s", 0.0),
                            blob.get("history", []), blob.get("done", {}))
        torch.set_rng_state(blob["torch_rng"])
        self.gen.set_state(blob["gen"])
        self.rng.bit_generator.state = blob["np_rng"]
        log.info("resumed stage %d at step %d from %s", self.state.stage, self.state.step, path)
        return blob

    def _csv(self, row: dict) -> None:
        if not self.is_main:
            return
        path = self.out / "metrics.csv"
        cols = ["time_s", "stage", "step", "kind", "lr", "loss", "pix", "mfm", "ssim", "grad", "temporal"]
        new = not path.is_file()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def _wrap(self, model):
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ---------------------------------------------------------------- stage I
    def _load_stage1_data(self) -> tuple[StageIData | None, list[PairTargets], dict | None]:
        cfg = self.cfg
        pairs = [p for root in cfg.pairs for p in find_pairs(resolve_path(root))]
        train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction)
        folder = None
        if self.is_main:
            folder = build_cache(cfg, pairs, progress=self.progress)   # resumes; no-op when complete
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()
        from fusion_ros.train.teachers import cache_folder

        folder = cache_folder(cfg)
        stats = load_stats(folder)
        load = lambda recs: [t for t in (load_targets(cfg, folder, r, stats) for r in recs) if t is not None]  # noqa: E731
        train_items, val_items = load(train_pairs), load(val_pairs)
        if cfg.val_max_pairs:
            val_items = val_items[: cfg.val_max_pairs]
        log.info("stage I data: %d train pairs, %d validation pairs (cache %s)", len(train_items), len(val_items), folder)
        return StageIData(train_items, cfg.crop, cfg.backbones, self.rng), val_items, stats

    @torch.no_grad()
    def validate_stage1(self, val_items: list[PairTargets]) -> dict[str, float]:
        """Mean stage-I loss terms over whole held-out images (no augmentation)."""
        self.model.eval()
        sums: dict[str, float] = {}
        for it in val_items:
            h, w = it.ir.shape
            c = self.cfg.val_crop
            ch, cw = (min(c, h) // 8 * 8, min(c, w) // 8 * 8) if c else (h, w)
            y0, x0 = ((h - ch) // 16 * 8, (w - cw) // 16 * 8) if c else (0, 0)
            gy, gx, gh, gw = y0 // 8, x0 // 8, -(-ch // 8), -(-cw // 8)
            sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
            batch = {"thermal": torch.from_numpy(it.ir[sl]).float().div(255)[None, None],
                     "visible": torch.from_numpy(it.vi[sl]).float().div(255).permute(2, 0, 1)[None],
                     "mean": torch.from_numpy(it.mean[sl].astype(np.float32))[None, None],
                     "var": torch.from_numpy(it.var[sl].astype(np.float32))[None, None],
                     "feats": [torch.from_numpy(it.feats[b][:, gy:gy + gh, gx:gx + gw].astype(np.float32))[None]
                               for b in self.cfg.backbones],
                     "fvar": [torch.from_numpy(it.fvar[b][gy:gy + gh, gx:gx + gw].astype(np.float32))[None] for b in self.cfg.backbones]}
            total, terms = self.stage1_loss(self.model, batch, augment=False, margin=0 if not self.cfg.val_crop else None)
            terms["loss"] = float(total)
            terms["l1"] = float((self._forward(self.model, batch["thermal"].to(self.device), batch["visible"].to(self.device))
                                 - batch["mean"].to(self.device)).abs().mean())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
        self.model.train()
        return {k: v / max(1, len(val_items)) for k, v in sums.items()}

    def _optimise(self, stage: int, opt, params: list, steps: int, budget_min: float, peak_lr: float, warmup: int,
                  steps_per_epoch: int, loss, validate) -> None:
        """The loop both stages share: LR schedule, step, progress bar, CSV log, validation, checkpoints.

        ``loss(progress) -> (total, terms)`` computes one batch; ``validate()`` runs each epoch and at the end.
        A Ctrl-C (or SIGTERM) writes ``last.pt`` first, so ``--resume`` continues from there.
        """
        from tqdm import tqdm

        cfg = self.cfg
        name = "I" * stage
        self.model.train()
        bar = tqdm(total=steps, initial=self.state.step, desc=f"stage {name}", disable=not (self.progress and self.is_main),
                   dynamic_ncols=True)
        t0 = time.time() - self.state.wall_s
        try:
            while (prog := _progress(self.state.step, steps, self.state.wall_s, budget_min)) < 1.0:
                lr = _lr_at(self.state.step, steps, peak_lr, warmup, cfg.lr_min_ratio, prog)
                for g in opt.param_groups:
                    g["lr"] = lr
                total, terms = loss(prog)
                opt.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                self.state.step += 1
                self.state.wall_s = time.time() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{float(total.detach()):.4f}", **{k: f"{v:.4f}" for k, v in terms.items()})
                if self.state.step % cfg.log_every == 0:
                    self._csv(dict(time_s=self.state.wall_s, stage=stage, step=self.state.step, kind="train", lr=lr,
                                   loss=float(total.detach()), **terms))
                done = _progress(self.state.step, steps, self.state.wall_s, budget_min) >= 1.0
                if self.state.step % steps_per_epoch == 0 or done:
                    validate()
                if self.state.step % cfg.ckpt_every == 0 and self.is_main:
                    self._ckpt("last.pt", opt)
        except KeyboardInterrupt:
            if self.is_main:
                p = self._ckpt("last.pt", opt)
                log.warning("interrupted at stage %s step %d; checkpoint %s (continue with --resume)", name, self.state.step, p)
            raise
        finally:
            bar.close()
        for p in self.model.parameters():
            p.requires_grad_(True)

    def run_stage1(self) -> None:
        cfg = self.cfg
        data, val_items, stats = self._load_stage1_data()
        self._panel(stats)
        # Stage I runs with zero memory, where the memory adapter adds exactly nothing (K = V = 0) and the output
        # history is switched off by its validity channel: keep both out
        # of the optimiser (and of DDP's gradient reduction, which rejects parameters without gradients).
        for name, p in self.model.named_parameters():
            p.requires_grad_(not name.startswith(TEMPORAL_MODULES))
        params = [p for p in self.model.parameters() if p.requires_grad]
        model = self._wrap(self.model)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if self._resume_blob is not None and self._resume_blob.get("stage") == 1 and "optimizer" in self._resume_blob:
            opt.load_state_dict(self._resume_blob["optimizer"])
        steps_per_epoch = max(1, len(data) * cfg.crops_per_pair // (cfg.batch_size * self.world))
        self._optimise(1, opt, params, cfg.steps, cfg.time_budget_min, cfg.lr, cfg.warmup_steps, steps_per_epoch,
                       loss=lambda prog: self.stage1_loss(model, data.sample(cfg.batch_size),
                                                          degrade=prog < cfg.augment_until),
                       validate=lambda: self._validate_and_select(val_items, stage=1))
        self.state.done["stage1"] = {"steps": self.state.step, "wall_s": round(self.state.wall_s, 1)}
        if self.is_main:
            # The stage-I result is the best validation checkpoint; stage II starts from (and distils) it.
            if (self.out / "best_stage1.pt").is_file():
                blob = torch.load(self.out / "best_stage1.pt", map_location="cpu", weights_only=False)
                self.model.load_state_dict(blob["state_dict"])
            self._ckpt("stage1_final.pt")

    def _validate_and_select(self, val_items: list, stage: int, clips: "ClipData | None" = None) -> None:
        if not self.is_main:
            return
        if stage == 1:
            if not val_items:
                return
            res = self.validate_stage1(val_items)
        else:
            if clips is None or not clips.val:
                return
            res = self.validate_stage2(clips)
        self._csv(dict(time_s=self.state.wall_s, stage=stage, step=self.state.step, kind="val", **res))
        self.state.history.append({"stage": stage, "step": self.state.step, **res})
        log.info("validation stage %d step %d: %s", stage, self.state.step, {k: round(v, 5) for k, v in res.items()})
        key = "best_val" if stage == 1 else "best_val2"
        best = self.state.best_val if stage == 1 else self.state.best_val2
        if res["loss"] < best:
            if stage == 1:
                self.state.best_val = res["loss"]
            else:
                self.state.best_val2 = res["loss"]
            self._ckpt(f"best_stage{stage}.pt", extra={key: res["loss"]})

    # ---------------------------------------------------------------- stage II
    def _stage2_loss(self, model, frozen, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        th = batch["thermal"].to(self.device)       # (B, T, 1, c, c)
        vis = batch["visible"].to(self.device)
        ftb = batch["flow_tb"].to(self.device)
        fbt = batch["flow_bt"].to(self.device)
        b, t = th.shape[:2]
        core = model.module if hasattr(model, "module") else model
        mem = core.zero_memory(th.shape[-2], th.shape[-1], b)
        sums = {"pix": 0.0, "ssim": 0.0, "grad": 0.0, "mfm": 0.0, "temporal": 0.0}
        prev = None
        for i in range(t):
            with torch.no_grad():
                tgt = self._forward(frozen, th[:, i], vis[:, i])
            out, mem = model(th[:, i], vis[:, i], mem)
            y = rgb_to_luma(out)
            sums["pix"] = sums["pix"] + (y - tgt).abs().mean()
            sums["ssim"] = sums["ssim"] + L.l_ssim(y, tgt)
            if cfg.w_grad > 0:
                sums["grad"] = sums["grad"] + L.l_grad(y, L.sobel_magnitude(tgt))
            if self.panel is not None and self.std and cfg.video_w_mfm > 0:
                with torch.no_grad():
                    tf = self._student_feats(tgt, vis[:, i])
                sf = self._student_feats(y, vis[:, i])
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
    def validate_stage2(self, clips: ClipData) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        batches = clips.val_batches()
        for batch in batches:
            total, terms = self._stage2_loss(self.model, self._frozen, batch)
            terms["loss"] = float(total)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
        self.model.train()
        return {k: v / max(1, len(batches)) for k, v in sums.items()}

    def run_stage2(self) -> None:
        cfg = self.cfg
        if not self.model.cfg.use_memory or self.model.adapter is None:
            log.warning("the model has no memory adapter (use_memory=false); stage II skipped")
            return
        sources = [c for root in cfg.video for c in find_clips(resolve_path(root))]
        clips = ClipData(sources, cfg, self.rng, progress=self.progress and self.is_main)
        log.info("stage II data: %d training clips, %d validation clips of %d frames", len(clips.train), len(clips.val), cfg.clip_len)
        try:
            from fusion_ros.train.teachers import cache_folder

            stats = load_stats(cache_folder(cfg))
        except FusionError:
            stats = None
        if cfg.video_w_mfm > 0:
            self._panel(stats)
        stage1 = self.out / "stage1_final.pt"
        self._frozen = copy.deepcopy(self.model)
        if stage1.is_file():
            self._frozen.load_state_dict(torch.load(stage1, map_location="cpu", weights_only=False)["state_dict"])
        self._frozen.eval()
        for p in self._frozen.parameters():
            p.requires_grad_(False)
        # Image weights frozen: only the memory adapter (gate, attention, flow head, phi) and the output history train.
        for name, p in self.model.named_parameters():
            p.requires_grad_(name.startswith(TEMPORAL_MODULES))
        params = [p for p in self.model.parameters() if p.requires_grad]
        model = self._wrap(self.model)
        opt = torch.optim.AdamW(params, lr=cfg.video_lr, weight_decay=cfg.weight_decay)
        if self._resume_blob is not None and self._resume_blob.get("stage") == 2 and "optimizer" in self._resume_blob:
            opt.load_state_dict(self._resume_blob["optimizer"])
        if self.state.stage != 2:
            self.state.stage, self.state.step, self.state.best_val2 = 2, 0, math.inf
        steps_per_epoch = max(10, len(clips.train) // max(1, cfg.video_batch))
        self._validate_and_select([], stage=2, clips=clips)         # step 0 = the stage-I model with memory
        self._optimise(2, opt, params, cfg.video_steps, cfg.video_time_budget_min, cfg.video_lr,
                       min(cfg.warmup_steps, cfg.video_steps // 10), steps_per_epoch,
                       loss=lambda prog: self._stage2_loss(model, self._frozen, clips.sample(cfg.video_batch)),
                       validate=lambda: self._validate_and_select([], stage=2, clips=clips))
        self.state.done["stage2"] = {"steps": self.state.step, "wall_s": round(self.state.wall_s, 1)}

    # ---------------------------------------------------------------- whole run
    def fit(self, resume: bool = False) -> Path | None:
        """Run stage I and II, then export the best model. Returns the exported ONNX path (main process).

        SIGTERM (a scheduler's preemption, ``kill``) is handled like Ctrl-C: checkpoint, then stop.
        """
        import signal
        import threading

        def _term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _term)
        cfg = self.cfg
        self._resume_blob = self._load_resume() if resume else None
        t_start = time.time()
        if self.is_main:
            (self.out / "train.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
        if self.state.stage == 1 and cfg.steps > 0:
            self.run_stage1()
        elif self.state.stage == 1 and self.is_main:
            self._ckpt("stage1_final.pt")
        if cfg.video_steps > 0 and cfg.video:
            if self.distributed:
                import torch.distributed as dist

                dist.barrier()          # stage1_final.pt (rank 0) must exist before every rank reads it
            if self.state.stage == 1:
                self.state.wall_s = 0.0
            self.run_stage2()
            if self.is_main and (self.out / "best_stage2.pt").is_file():
                blob = torch.load(self.out / "best_stage2.pt", map_location="cpu", weights_only=False)
                self.model.load_state_dict(blob["state_dict"])
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        if not self.is_main:
            return None
        return self.export(time.time() - t_start)

    def export(self, wall_s: float) -> Path:
        """Export the current weights to ``<out_dir>/fusion_<model>.onnx`` (+ ``export_path`` when set)."""
        from fusion_ros.export import export_onnx

        cfg = self.cfg
        val = [h for h in self.state.history if h["stage"] == 1]
        meta = {
            "trained_by": "fusion-ros train",
            "data": {"pairs": list(cfg.pairs), "video": list(cfg.video)},
            "teachers": cfg.teacher_weight_map(),
            "backbones": list(cfg.backbones),
            "steps_run": self.state.done,
            "batch": {"stage1": f"{cfg.batch_size}x{cfg.crop}x{cfg.crop}",
                      "stage2": f"{cfg.video_batch}x{cfg.clip_len}x{cfg.video_crop}x{cfg.video_crop}"},
            "wall_s_this_process": round(wall_s, 1),
            "init_checkpoint": cfg.init_checkpoint or None,
            "hardware": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, torch {torch.__version__}"
                        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
            "best_val_stage1": min((h["loss"] for h in val), default=None),
        }
        model = self.model.module if hasattr(self.model, "module") else self.model
        model = model.cpu().eval()
        targets = [self.out / f"fusion_{cfg.model}.onnx"]
        if cfg.export_path and cfg.export_path.lower() not in ("none", "null"):
            targets.append(resolve_path(cfg.export_path))
        for tgt in targets:
            export_onnx(model, tgt, meta)
            tgt.with_suffix(".train.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
            log.info("exported %s", tgt)
        return targets[-1]


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path | None:
    """Train per ``cfg`` (stage I, stage II, export). Returns the exported ONNX path on the main process."""
    return Trainer(cfg, progress=progress).fit(resume=resume)
