"""A whole training run: stage I (images, teacher distillation), stage II (video, memory adapter), ONNX export.

Each stage is a function of the :class:`~fusion_ros.train.run.Run` and the :class:`~fusion_ros.train.checkpoint.RunState`
(``stage_images.run_stage1``, ``stage_video.run_stage2``); this module chains them. ``resume=True`` continues from
``<out_dir>/last.pt``.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path

import torch
import yaml

from fusion_ros.train.checkpoint import ResumePoint, RunState, load_resume, load_weights, save_checkpoint
from fusion_ros.train.config import TrainConfig, config_dict, resolve_path
from fusion_ros.train.run import Run, close_run, open_run
from fusion_ros.train.stage_images import run_stage1
from fusion_ros.train.stage_video import run_stage2

__all__ = ["train", "fit", "export"]

log = logging.getLogger(__name__)


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's preemption, ``kill``) is handled like Ctrl-C: checkpoint, then stop."""
    import signal
    import threading

    def _term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _term)


def fit(run: Run, resume: bool = False) -> RunState:
    """Run stage I then stage II (each when it has steps), leaving the best model in ``run.model``; returns the state."""
    _stop_on_sigterm()
    cfg = run.cfg
    start = load_resume(run) if resume else ResumePoint()
    state = start.state
    if run.rt.is_main:
        (run.out / "train.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
    if state.stage == 1 and cfg.steps > 0:
        run_stage1(run, state, start.optimizer_for(1))
    elif state.stage == 1 and run.rt.is_main:
        save_checkpoint(run, "stage1_final.pt", state)
    if cfg.video_steps > 0 and cfg.video:
        run.rt.barrier()          # stage1_final.pt (rank 0) must exist before every rank reads it
        run_stage2(run, state, start.optimizer_for(2))
        if run.rt.is_main:
            load_weights(run.model, run.out / "best_stage2.pt")
    return state


def export(run: Run, state: RunState, wall_s: float) -> Path:
    """Export ``run.model`` to ``<out_dir>/fusion_<model>.onnx`` (+ ``export_path`` when set); returns the last path."""
    from fusion_ros.export import export_onnx

    cfg = run.cfg
    val = [h for h in state.history if h["stage"] == 1]
    meta = {
        "trained_by": "fusion-ros train",
        "data": {"pairs": list(cfg.pairs), "video": list(cfg.video)},
        "teachers": cfg.teacher_weight_map(),
        "backbones": list(cfg.backbones),
        "steps_run": state.done,
        "batch": {"stage1": f"{cfg.batch_size}x{cfg.crop}x{cfg.crop}",
                  "stage2": f"{cfg.video_batch}x{cfg.clip_len}x{cfg.video_crop}x{cfg.video_crop}"},
        "wall_s_this_process": round(wall_s, 1),
        "init_checkpoint": cfg.init_checkpoint or None,
        "hardware": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, torch {torch.__version__}"
                    + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
        "best_val_stage1": min((h["loss"] for h in val), default=None),
    }
    model = run.model.cpu().eval()
    targets = [run.out / f"fusion_{cfg.model}.onnx"]
    if cfg.export_path and cfg.export_path.lower() not in ("none", "null"):
        targets.append(resolve_path(cfg.export_path))
    for tgt in targets:
        export_onnx(model, tgt, meta)
        tgt.with_suffix(".train.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
        log.info("exported %s", tgt)
    return targets[-1]


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path | None:
    """Train per ``cfg`` (stage I, stage II, export). Returns the exported ONNX path on the main process."""
    run = open_run(cfg, progress=progress)
    t_start = time.time()
    state = fit(run, resume=resume)
    close_run(run)
    if not run.rt.is_main:
        return None
    return export(run, state, time.time() - t_start)
