"""Batches for both stages: random aligned crops of cached pairs (stage I) and of short clips with reference flows (stage II).

Crops start on the 1/8 feature grid, so a crop of a pair cuts its cached backbone features at the same place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fusion_ros.errors import FusionError
from fusion_ros.train.config import TrainConfig
from fusion_ros.train.data import ClipSource, clip_length, read_clip_frames
from fusion_ros.train.teachers import PairTargets

__all__ = ["StageIData", "ClipData", "Clip", "dis_flow", "pair_batch"]

log = logging.getLogger(__name__)


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
        return {
            "thermal": torch.from_numpy(np.stack(th)).float().div_(255.0)[:, None],
            "visible": torch.from_numpy(np.stack(vi)).float().div_(255.0).permute(0, 3, 1, 2).contiguous(),
            "mean": torch.from_numpy(np.stack(mu).astype(np.float32))[:, None],
            "var": torch.from_numpy(np.stack(var).astype(np.float32))[:, None],
            "feats": [torch.from_numpy(np.stack(feats[b]).astype(np.float32)) for b in self.backbones],
            "fvar": [torch.from_numpy(np.stack(fvar[b]).astype(np.float32)) for b in self.backbones],
        }


def pair_batch(it: PairTargets, crop: int, backbones: tuple[str, ...]) -> dict[str, Any]:
    """A batch of one held-out pair: its centred ``crop`` (on the 1/8 grid), or the whole image when ``crop`` is 0."""
    h, w = it.ir.shape
    ch, cw = (min(crop, h) // 8 * 8, min(crop, w) // 8 * 8) if crop else (h, w)
    y0, x0 = ((h - ch) // 16 * 8, (w - cw) // 16 * 8) if crop else (0, 0)
    gy, gx, gh, gw = y0 // 8, x0 // 8, -(-ch // 8), -(-cw // 8)
    sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    return {"thermal": torch.from_numpy(it.ir[sl]).float().div(255)[None, None],
            "visible": torch.from_numpy(it.vi[sl]).float().div(255).permute(2, 0, 1)[None],
            "mean": torch.from_numpy(it.mean[sl].astype(np.float32))[None, None],
            "var": torch.from_numpy(it.var[sl].astype(np.float32))[None, None],
            "feats": [torch.from_numpy(it.feats[b][:, gy:gy + gh, gx:gx + gw].astype(np.float32))[None] for b in backbones],
            "fvar": [torch.from_numpy(it.fvar[b][gy:gy + gh, gx:gx + gw].astype(np.float32))[None] for b in backbones]}


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """OpenCV DIS flow (medium preset) from gray ``a`` to gray ``b``: ``a(x) ≈ b(x + flow(x))``. (H, W, 2) float32."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(a, b, None)


@dataclass
class Clip:
    """One registered clip in memory with its reference flows."""

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
        self.train: list[Clip] = []
        self.val: list[Clip] = []
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
                    store.append(Clip(cth, cvi, ftb, fbt))
        if not self.train:
            raise FusionError("no training clip could be built from the videos; check 'video' and clip_len")

    def _starts(self, lo: int, hi: int, count: int) -> list[int]:
        if hi < lo:
            return []
        return sorted(int(s) for s in self.rng.choice(np.arange(lo, hi + 1), size=min(count, hi - lo + 1), replace=False))

    @staticmethod
    def _crop(clip: Clip, c: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
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
        """Every validation clip whole, centred on the 1/8 grid, as a batch of one."""
        return [{k: v[None] for k, v in self._crop(c, 10 ** 6, None).items()} for c in self.val]
