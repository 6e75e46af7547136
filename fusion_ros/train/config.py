"""Typed training configuration (stage I images, stage II video) with checked YAML/CLI overrides.

A YAML file under ``config/train/`` holds a flat mapping of :class:`TrainConfig` fields; ``--set key=value``
on the command line overrides single fields. Unknown keys raise :class:`ConfigError` with the closest match.
A path with the ``shared:`` prefix lies in the shared data folder; any other relative path is resolved against
the working directory, like a path given on the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_ros.config import apply_overrides, load_yaml, to_dict
from fusion_ros.errors import ConfigError
from fusion_ros.model.variants import VARIANTS

__all__ = ["TrainConfig", "check_data_paths", "load_train_config", "REPO_ROOT", "resolve_path", "shared_root"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_root() -> Path:
    """The shared data folder: ``$FUSION_ROS_SHARED`` or ``<repo>/../shared``."""
    import os

    return Path(os.environ.get("FUSION_ROS_SHARED", REPO_ROOT.parent / "shared")).resolve()


def resolve_path(p: str) -> Path:
    """Resolve a config path: ``shared:`` prefix -> the shared data folder, relative -> the working directory."""
    if p.startswith("shared:"):
        return shared_root() / p[len("shared:"):].lstrip("/")
    return Path(p).expanduser().absolute()


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Defaults reproduce the shipped ``lite`` model."""

    # ---- model
    model: str = "lite"                                   # student variant: lite | default
    init_checkpoint: str = ""                             # optional .pt (export format) to start from; "" = fresh weights
    norm: str = ""                                        # feature norm: "" = the variant's (or checkpoint's) | layer | batch

    # ---- stage I data: pair folders and cached teachers
    pairs: tuple[str, ...] = ("shared:data/pairs/train",)  # pair roots: <root>/<dataset>/{ir,vi} or <root>/{ir,vi}
    dataset_repeats: tuple[str, ...] = ()                 # "<dataset>:<n>": its training pairs are drawn n times as
                                                          # often (n >= 1; validation pairs are not repeated)
    teachers_root: str = "shared:data/teachers"           # teachers/<method>/<split>/<dataset>/<name>.png
    teacher_split: str = "train"                          # <split> in the teacher layout
    teachers: tuple[str, ...] = ("SeAFusion", "IFCNN")    # teacher methods in the ensemble (>= 1)
    teacher_weights: tuple[float, ...] = (1.0, 1.0)       # per-teacher weights (>= 0, same length; normalised to sum 1)
    cache_dir: str = "cache/teachers"                     # teacher-statistics cache (a sub-folder per teacher/backbone set)
    target: str = "mean"                                  # distillation target: mean (weighted teacher mean) or select
                                                          # (per-region teacher selection, fusion_ros.train.targets)
    select_measure: str = "edge+vif"                      # select: structure score: edge (local Qabf), ssim, vif, or a
                                                          # mean of several joined by + (fusion_ros.train.targets)
    select_window: int = 17                               # select: odd window side the scores are averaged over, px
    select_tau: float = 0.03                              # select: softmax temperature over teachers (0 = pick the best)
    select_blend: str = "pyramid"                         # select: pyramid (Laplacian-pyramid blend) or pixel
    select_levels: int = 9                                # select: pyramid levels (fewer where an image is small)
    val_fraction: float = 0.1                             # share of pairs held out for validation, [0, 0.5]
    crop: int = 176                                       # square training crop, px, multiple of 8 (<= smallest image side)
    batch_size: int = 8                                   # crops per step (per process under DDP), >= 1
    crops_per_pair: int = 4                               # one epoch = crops_per_pair crops of every training pair

    # ---- stage I optimisation
    steps: int = 3000                                     # stage-I optimiser steps (0 = skip stage I)
    lr: float = 2e-3                                      # peak AdamW learning rate, > 0
    weight_decay: float = 0.01                            # AdamW weight decay, >= 0
    warmup_steps: int = 100                               # linear warm-up, then cosine decay to lr_min_ratio*lr
    lr_min_ratio: float = 0.05                            # final LR as a fraction of lr, [0, 1]
    grad_clip: float = 1.0                                # gradient-norm clip, > 0
    time_budget_min: float = 0.0                          # stage-I wall-time budget in minutes (0 = none): the LR schedule
                                                          # follows max(step/steps, elapsed/budget) and stops at 1

    # ---- losses (weights 1.0 / 0.5 / 0.2) plus the edge term
    w_pix: float = 1.0                                    # uncertainty-weighted L1
    w_mfm: float = 0.5                                    # routed multi-backbone alignment (0 = no backbones)
    w_ssim: float = 0.2                                   # 1 - SSIM against the ensemble mean
    w_grad: float = 0.5                                   # L1 between Sobel magnitudes of the output and grad_target
    grad_target: str = "sources_max"                      # sources_max: max(|grad T|, |grad Y_vis|); target: |grad ȳ|; max: both
    pix_eps: float = 1e-3                                 # epsilon of the inverse-variance pixel weights
    tau: float = 1.0                                      # routing temperature of L_MFM, > 0
    backbones: tuple[str, ...] = ("effnet_lite0", "ssd_mnv2")  # frozen panel (see fusion_ros.train.backbones)
    mfm_margin: int = 1                                   # feature cells ignored at crop borders (padding effects), >= 0
    mfm_batch: int = 2                                    # crops of each batch that go through the panel (0 = all); the
                                                          # backbones cost ~20x the lite student on a CPU
    val_crop: int = 256                                   # validation on a centred crop of this side (0 = whole images)

    # ---- augmentation (inputs only; targets stay clean)
    augment_until: float = 1.0                            # share of stage I (progress in [0, 1]) with misalignment and
                                                          # degradations on; after it, clean inputs (flips stay on)
    flip_prob: float = 0.5                                # horizontal flip of the input pair (output flipped back)
    misalign_prob: float = 0.25                           # probability of the thermal affine injection
    misalign_px: float = 10.0                             # max |translation| in px
    misalign_deg: float = 2.0                             # max |rotation| in degrees
    p_noise: float = 0.15                                 # visible Gaussian noise, sigma up to s_noise
    s_noise: float = 0.06
    p_blur: float = 0.1                                   # visible Gaussian blur, sigma up to s_blur px
    s_blur: float = 2.0
    p_lowlight: float = 0.15                              # visible darkening: x * gain^(gamma), gain down to s_lowlight
    s_lowlight: float = 0.25
    p_haze: float = 0.1                                   # visible haze: x*t + A*(1-t), t down to 1 - s_haze
    s_haze: float = 0.6
    p_glare: float = 0.05                                 # visible glare blob, peak added brightness s_glare
    s_glare: float = 0.8
    p_rain: float = 0.05                                  # visible rain streaks, density s_rain
    s_rain: float = 0.004
    p_tblur: float = 0.1                                  # thermal blur, sigma up to s_tblur px
    s_tblur: float = 1.5
    p_stripe: float = 0.1                                 # thermal column stripes + fixed-pattern noise, amplitude s_stripe
    s_stripe: float = 0.04

    # ---- stage II (video)
    video: tuple[str, ...] = ("shared:data/video/train",)  # clip roots: <root>/<clip>/{ir,vi}.mp4 or {ir,vi}/*.png
    video_steps: int = 300                                # stage-II optimiser steps (0 = skip stage II)
    video_lr: float = 1e-3                                # stage-II peak learning rate
    clip_len: int = 6                                     # frames per training clip, >= 2
    clip_stride: int = 1                                  # frame step inside a clip (1 = consecutive frames)
    clips_per_video: int = 24                             # clips sampled (and cached in memory) per video
    video_scale: float = 0.5                              # frames resized by this factor when loaded (640x480 -> 320x240)
    video_crop: int = 160                                 # square crop of a clip, px, multiple of 8
    video_batch: int = 2                                  # clips per stage-II step
    w_temporal: float = 1.0                               # temporal consistency loss weight
    video_w_mfm: float = 0.0                              # stage-II alignment weight; 0 because the stage-II target is the
                                                          # stage-I student itself (no teacher information beyond pixels)
    video_time_budget_min: float = 0.0                    # stage-II wall-time budget in minutes (0 = none)
    video_val_fraction: float = 0.15                      # last share of each video held out for validation

    # ---- engineering
    out_dir: str = "runs/lite"                            # checkpoints, metrics.csv, exported model
    seed: int = 0                                         # seeds python, numpy and torch (+ rank under DDP)
    num_threads: int = 0                                  # torch CPU threads (0 = torch default)
    ckpt_every: int = 200                                 # steps between checkpoints (also on Ctrl-C), >= 1
    log_every: int = 10                                   # steps between CSV rows, >= 1
    val_max_pairs: int = 0                                # 0 = all held-out pairs each validation
    export_path: str = ""                                 # also write the exported model here (e.g. models/fusion_lite.onnx)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        need(self.model in VARIANTS, f"model='{self.model}'; expected one of {', '.join(VARIANTS)}")
        need(self.norm in ("", "layer", "batch"), f"norm='{self.norm}'; expected '' (the model's own), layer or batch")
        need(len(self.teachers) >= 1, "teachers is empty; list at least one teacher method, e.g. [SeAFusion, IFCNN]")
        need(len(self.teacher_weights) == len(self.teachers),
             f"teacher_weights has {len(self.teacher_weights)} entries for {len(self.teachers)} teachers; give one weight per teacher")
        need(all(w >= 0 for w in self.teacher_weights) and sum(self.teacher_weights) > 0,
             f"teacher_weights {list(self.teacher_weights)} must be >= 0 with a positive sum")
        need(0.0 <= self.val_fraction <= 0.5, f"val_fraction={self.val_fraction} must be in [0, 0.5]")
        for name in ("crop", "video_crop"):
            v = getattr(self, name)
            need(v >= 32 and v % 8 == 0, f"{name}={v} must be a multiple of 8 and >= 32 (features live on a 1/8 grid)")
        for name in ("batch_size", "crops_per_pair", "clip_len", "clip_stride", "clips_per_video", "video_batch",
                     "ckpt_every", "log_every"):
            need(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be >= 1")
        need(self.clip_len >= 2, f"clip_len={self.clip_len} must be >= 2 (the temporal loss needs pairs of frames)")
        for name in ("steps", "video_steps", "warmup_steps", "mfm_margin", "val_max_pairs", "num_threads", "mfm_batch", "val_crop"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be >= 0")
        for name in ("time_budget_min", "video_time_budget_min", "video_w_mfm"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be >= 0")
        for name in ("lr", "video_lr", "grad_clip", "tau", "pix_eps"):
            need(getattr(self, name) > 0, f"{name}={getattr(self, name)} must be > 0")
        for name in ("w_pix", "w_mfm", "w_ssim", "w_grad", "w_temporal", "weight_decay", "misalign_px", "misalign_deg"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be >= 0")
        for f in dataclasses.fields(self):
            if f.name.startswith("p_") or f.name.endswith("_prob") or f.name in ("lr_min_ratio", "video_val_fraction",
                                                                                 "augment_until"):
                v = getattr(self, f.name)
                need(0.0 <= v <= 1.0, f"{f.name}={v} must be in [0, 1]")
        need(0.05 <= self.video_scale <= 1.0, f"video_scale={self.video_scale} must be in [0.05, 1]")
        need(self.target in ("mean", "select"), f"target='{self.target}'; expected mean or select")
        self.select_params()                              # raises ConfigError naming the bad select_* value
        self.repeat_map()                                 # raises ConfigError naming the bad dataset_repeats entry
        need(self.grad_target in ("sources_max", "target", "max"),
             f"grad_target='{self.grad_target}'; expected sources_max, target or max")
        from fusion_ros.train.backbones import BACKBONES

        for b in self.backbones:
            need(b in BACKBONES, f"unknown backbone '{b}' in backbones; expected some of {sorted(BACKBONES)}")
        need(self.w_mfm == 0 or len(self.backbones) >= 1, "w_mfm > 0 needs at least one entry in backbones")

    def select_params(self):
        """The :class:`~fusion_ros.train.targets.SelectParams` of the ``select`` target."""
        from fusion_ros.train.targets import SelectParams

        return SelectParams(measure=self.select_measure, window=self.select_window, tau=self.select_tau,
                            blend=self.select_blend, levels=self.select_levels)

    def repeat_map(self) -> dict[str, int]:
        """dataset -> how many times its training pairs are listed (``dataset_repeats``)."""
        out = {}
        for entry in self.dataset_repeats:
            name, _, count = str(entry).rpartition(":")
            if not name or not count.isdigit() or int(count) < 1:
                raise ConfigError(f"dataset_repeats entry '{entry}' must be '<dataset>:<n>' with n >= 1, "
                                  "e.g. dataset_repeats=[llvip:3]")
            out[name] = int(count)
        return out

    def teacher_weight_map(self) -> dict[str, float]:
        """Normalised weights of the teachers that count (weight > 0)."""
        total = float(sum(self.teacher_weights))
        return {t: w / total for t, w in zip(self.teachers, self.teacher_weights) if w > 0}


def _path_problems(key: str, value: str, want: str, example: str) -> list[str]:
    path = resolve_path(value)
    ok = path.is_file() if want == "file" else path.is_dir()
    if ok:
        return []
    shown = f"'{value}'" if str(path) == value else f"'{value}' ({path})"
    what = "does not exist" if not path.exists() else f"is not a {want}"
    return [f"{key}: {shown} {what}; {example}"]


def check_data_paths(cfg: TrainConfig) -> None:
    """Check every path the run will read (pairs, teachers, video, init_checkpoint) before any training starts.

    Raises:
        ConfigError: one line naming each config key whose path is missing, and how to set it.
    """
    problems: list[str] = []
    if cfg.steps > 0:
        for root in cfg.pairs:
            problems += _path_problems("pairs", root, "folder", "list folders holding ir/ + vi/, e.g. --set pairs=[shared:data/pairs/train]")
        teachers = _path_problems("teachers_root", cfg.teachers_root, "folder",
                                  "set it to <root>/<method>/<split>/ outputs, e.g. --set teachers_root=shared:data/teachers")
        problems += teachers
        if not teachers:
            for method in cfg.teacher_weight_map():
                problems += _path_problems("teachers", f"{cfg.teachers_root.rstrip('/')}/{method}/{cfg.teacher_split}", "folder",
                                           f"no outputs of teacher '{method}' for teacher_split '{cfg.teacher_split}'; "
                                           "list teachers that teachers_root holds")
    if cfg.video_steps > 0:
        for root in cfg.video:
            problems += _path_problems("video", root, "folder", "list clip folders (<clip>/{ir,vi}), "
                                       "e.g. --set video=[shared:data/video/train], or --set video_steps=0")
    if cfg.init_checkpoint:
        problems += _path_problems("init_checkpoint", cfg.init_checkpoint, "file", "pass a .pt written by training or export, or ''")
    if problems:
        raise ConfigError(" | ".join(problems))


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from an optional YAML file, then ``overrides`` (e.g. from ``--set``)."""
    cfg = TrainConfig()
    if path:
        cfg = apply_overrides(cfg, load_yaml(path))
    return apply_overrides(cfg, overrides)


def config_dict(cfg: TrainConfig) -> dict:
    """Plain dict of ``cfg`` (tuples as lists), for YAML dumps and checkpoints."""
    return to_dict(cfg)
