"""Teacher-ensemble cache: per-pair ensemble mean/variance and per-backbone feature statistics.

For each training pair the cached teacher outputs ``{y_n}`` (fused luminance, 8-bit PNG) are read,
weighted by the configured per-teacher weights ``w_n`` (normalised to sum 1), and reduced to

- ``mean`` = Σ w_n y_n and ``var`` = Σ w_n (y_n − mean)² (luminance, full resolution); with ``target: select``
  the weights are per pixel, a_n(x) from :func:`fusion_ros.train.targets.select_target`, ``mean`` is the selection
  target and ``var`` = Σ a_n (y_n − mean)²;
- for every backbone Φ_k of the panel, the features of each teacher sample rendered as RGB
  (the visible chroma kept, BT.601: ``rgb_n = vis + (y_n − Y_vis)``), reduced to the weighted feature
  mean and per-channel variance on the 1/8 grid (``select``: with a_n averaged over each grid cell);
- per-pair partial sums of the features (Σf, Σf², count), from which ``stats.json`` gets the
  training-set channel std σ̂_k and the mean routing variance E_x[v̄_k].

One ``.npz`` per pair under ``<cache_dir>/<key>/<dataset>/<name>.npz`` where ``key`` hashes the
teacher set, weights, panel (and the selection parameters), so changing them never reuses stale files. Building resumes: pairs
whose file exists are skipped. The training step never runs a backbone on a teacher sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusion_ros.errors import FusionError
from fusion_ros.train.config import TrainConfig, resolve_path
from fusion_ros.train.data import PairRecord, load_pair
from fusion_ros.train.targets import pool_weights, select_target, source_lumas

__all__ = ["cache_folder", "build_cache", "load_stats", "teacher_files", "PairTargets", "load_targets", "luma_np"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def luma_np(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of (H, W, 3) RGB in [0, 1] -> (H, W)."""
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _target_ident(cfg: TrainConfig) -> dict:
    """The target's part of the cache identity; empty for the mean, so the mean's caches keep their folders."""
    if cfg.target == "mean":
        return {}
    return {"target": cfg.target, "select": dataclasses.asdict(cfg.select_params())}


def cache_folder(cfg: TrainConfig) -> Path:
    """Cache folder of this teacher set + weights + backbone panel (+ selection parameters)."""
    ident = json.dumps({"v": CACHE_VERSION, "teachers": cfg.teacher_weight_map(), "split": cfg.teacher_split,
                        "teachers_root": str(resolve_path(cfg.teachers_root)), "backbones": list(cfg.backbones),
                        **_target_ident(cfg)},
                       sort_keys=True)
    key = hashlib.sha1(ident.encode()).hexdigest()[:10]
    return resolve_path(cfg.cache_dir) / key


def teacher_files(cfg: TrainConfig, rec: PairRecord) -> list[tuple[str, float, Path]]:
    """(method, normalised weight, path) of each weighted teacher output of ``rec``."""
    root = resolve_path(cfg.teachers_root)
    out = []
    for method, w in cfg.teacher_weight_map().items():
        base = root / method / cfg.teacher_split
        path = (base / rec.dataset / f"{rec.name}.png") if rec.dataset else (base / f"{rec.name}.png")
        out.append((method, w, path))
    return out


def _read_gray(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FusionError(f"cannot read teacher output {path}")
    return img.astype(np.float32) / 255.0


def _pair_file(folder: Path, rec: PairRecord) -> Path:
    return folder / (rec.dataset or "_") / f"{rec.name}.npz"


@torch.no_grad()
def _compute_pair(cfg: TrainConfig, rec: PairRecord, panel: torch.nn.ModuleList) -> dict[str, np.ndarray]:
    ir, vi = load_pair(rec)
    files = teacher_files(cfg, rec)
    ys, ws = [], []
    for method, w, path in files:
        if not path.is_file():
            raise FileNotFoundError(str(path))
        y = _read_gray(path)
        if y.shape != ir.shape:
            raise FusionError(f"teacher {method} output {path} is {y.shape}, the pair is {ir.shape}")
        ys.append(y)
        ws.append(w)
    y = np.stack(ys)                                         # (N, H, W)
    prior = np.asarray(ws, np.float32)
    if cfg.target == "select":
        mean, w = select_target(y, *source_lumas(ir, vi), cfg.select_params(), prior)   # w: (N, H, W) per pixel
    else:
        w = np.broadcast_to(prior[:, None, None], y.shape)
        mean = (w * y).sum(0)
    var = (w * (y - mean) ** 2).sum(0)
    out: dict[str, np.ndarray] = {"mean": mean.astype(np.float16), "var": var.astype(np.float16)}
    vis = vi.astype(np.float32) / 255.0
    yv = luma_np(vis)
    rgb = np.clip(vis[None] + (y - yv[None])[..., None], 0.0, 1.0)   # (N, H, W, 3), visible chroma kept
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()
    for bb in panel:
        f = bb(x)                                            # (N, C, gh, gw)
        wt = _cell_weights(cfg, prior, w, f.shape[2:])
        fm = (wt * f).sum(0)
        fv = (wt * (f - fm) ** 2).sum(0)
        out[f"fmean_{bb.name}"] = fm.numpy().astype(np.float16)
        out[f"fvar_{bb.name}"] = fv.numpy().astype(np.float16)
        # Partial sums over all samples and pixels for the training-set channel std.
        out[f"fsum_{bb.name}"] = f.sum(dim=(0, 2, 3)).double().numpy()
        out[f"fsq_{bb.name}"] = (f.double() ** 2).sum(dim=(0, 2, 3)).numpy()
        out[f"fcount_{bb.name}"] = np.asarray([f.shape[0] * f.shape[2] * f.shape[3]], np.float64)
    return out


def _cell_weights(cfg: TrainConfig, prior: np.ndarray, w: np.ndarray, grid: torch.Size) -> torch.Tensor:
    """Teacher weights on a feature grid, (N, 1, 1, 1) for the mean or (N, 1, gh, gw) for the selection."""
    if cfg.target == "select":
        return torch.from_numpy(pool_weights(np.ascontiguousarray(w), (grid[0], grid[1]))).unsqueeze(1)
    return torch.from_numpy(prior).view(-1, 1, 1, 1)


def build_cache(cfg: TrainConfig, pairs: list[PairRecord], progress: bool = True) -> Path:
    """Build (or complete) the teacher cache for ``pairs`` and write ``stats.json``.

    Args:
        cfg: training config (teachers, weights, panel, cache_dir).
        pairs: the training pairs (the statistics are computed over these).
        progress: show a tqdm bar.

    Returns:
        The cache folder.
    """
    from tqdm import tqdm

    from fusion_ros.train.backbones import build_panel

    folder = cache_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cache.json").write_text(json.dumps({"teachers": cfg.teacher_weight_map(), "backbones": list(cfg.backbones),
                                                    "teacher_split": cfg.teacher_split, **_target_ident(cfg)}, indent=1))
    todo = [r for r in pairs if not _pair_file(folder, r).is_file()]
    panel = build_panel(cfg.backbones) if cfg.backbones else torch.nn.ModuleList()
    missing = 0
    for rec in tqdm(todo, desc="teachers cache", disable=not progress, unit="pair"):
        try:
            arrays = _compute_pair(cfg, rec, panel)
        except FileNotFoundError as exc:
            missing += 1
            log.warning("pair %s has no teacher output %s; skipped", rec.key, exc)
            continue
        path = _pair_file(folder, rec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)                                    # atomic: an interrupted build never leaves half a file
    if missing:
        log.warning("%d of %d pairs had missing teacher outputs and are not in the cache", missing, len(pairs))
    _write_stats(cfg, folder, pairs)
    return folder


def _write_stats(cfg: TrainConfig, folder: Path, pairs: list[PairRecord]) -> dict:
    files = [_pair_file(folder, r) for r in pairs if _pair_file(folder, r).is_file()]
    if not files:
        raise FusionError(f"the teacher cache {folder} is empty; check teachers_root and the teacher names {list(cfg.teachers)}")
    stats: dict = {"pairs": len(files), "backbones": {}}
    sums: dict[str, list] = {b: [0.0, 0.0, 0.0] for b in cfg.backbones}
    for f in files:
        with np.load(f) as z:
            for b in cfg.backbones:
                sums[b][0] = sums[b][0] + z[f"fsum_{b}"]
                sums[b][1] = sums[b][1] + z[f"fsq_{b}"]
                sums[b][2] = sums[b][2] + float(z[f"fcount_{b}"][0])
    for b in cfg.backbones:
        s, sq, n = sums[b]
        std = np.sqrt(np.maximum(sq / n - (s / n) ** 2, 1e-12))
        stats["backbones"][b] = {"channel_std": std.tolist()}
    # Mean routing variance E_x[v̄_k] with v_k = mean over channels of Var_n(Φ/σ̂) (needs σ̂ first).
    for b in cfg.backbones:
        inv = 1.0 / np.asarray(stats["backbones"][b]["channel_std"], np.float64) ** 2
        vbar = []
        for f in files:
            with np.load(f) as z:
                fv = z[f"fvar_{b}"].astype(np.float64)
                vbar.append(float((fv * inv[:, None, None]).mean()))
        stats["backbones"][b]["mean_var"] = float(np.mean(vbar))
    (folder / "stats.json").write_text(json.dumps(stats))
    return stats


def load_stats(folder: Path) -> dict:
    """The ``stats.json`` of a built cache."""
    p = folder / "stats.json"
    if not p.is_file():
        raise FusionError(f"teacher cache {folder} has no stats.json; run `fusion-ros teachers cache` first")
    return json.loads(p.read_text())


@dataclass
class PairTargets:
    """In-memory training sample: images, ensemble statistics and normalised backbone targets."""

    key: str
    ir: np.ndarray                  # (H, W) uint8
    vi: np.ndarray                  # (H, W, 3) uint8 RGB
    mean: np.ndarray                # (H, W) float16 ensemble mean luminance ȳ in [0, 1]
    var: np.ndarray                 # (H, W) float16 ensemble variance σ²
    feats: dict[str, np.ndarray]    # backbone -> (C, gh, gw) float16, F̄_k = Σ w_n Φ_k(y_n)/σ̂_k
    fvar: dict[str, np.ndarray]     # backbone -> (gh, gw) float16, ṽ_k = v_k / (E[v̄_k] + eps)


def load_targets(cfg: TrainConfig, folder: Path, rec: PairRecord, stats: dict) -> PairTargets | None:
    """Load one pair with its cached targets; ``None`` if the pair is not in the cache."""
    path = _pair_file(folder, rec)
    if not path.is_file():
        return None
    ir, vi = load_pair(rec)
    feats, fvar = {}, {}
    with np.load(path) as z:
        mean, var = z["mean"], z["var"]
        for b in cfg.backbones:
            std = np.asarray(stats["backbones"][b]["channel_std"], np.float32)[:, None, None]
            feats[b] = (z[f"fmean_{b}"].astype(np.float32) / std).astype(np.float16)
            v = (z[f"fvar_{b}"].astype(np.float32) / std ** 2).mean(0)
            fvar[b] = (v / (stats["backbones"][b]["mean_var"] + 1e-8)).astype(np.float16)
    return PairTargets(rec.key, ir, vi, mean, var, feats, fvar)
