"""The optimisation loop both stages share: LR schedule, steps, progress bar, metrics rows, validation, checkpoints.

A Ctrl-C (or SIGTERM) writes ``last.pt`` first, so ``--resume`` continues from there.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from fusion_ros.train.checkpoint import RunState, append_metrics, save_checkpoint
from fusion_ros.train.run import Run

__all__ = ["Schedule", "lr_at", "stage_progress", "optimise", "record_validation", "trainable_only"]

log = logging.getLogger(__name__)

# One batch: (total loss, {term: float}); the argument is the share of the stage done, in [0, 1).
StepLoss = Callable[[float], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class Schedule:
    """How long a stage runs and its learning rate: linear warm-up, then cosine decay to ``lr_min_ratio``."""

    steps: int
    budget_min: float             # wall-time budget (0 = none): the stage ends at whichever of steps and budget comes first
    peak_lr: float
    warmup: int
    steps_per_epoch: int          # validation after every epoch and at the end


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float, progress: float | None = None) -> float:
    """Linear warm-up then cosine decay; ``progress`` in [0, 1] (e.g. from a time budget) overrides step/total."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup) if progress is None else progress
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def stage_progress(step: int, total: int, elapsed_s: float, budget_min: float) -> float:
    """Share of the stage done: steps, or wall time when a budget is set (whichever is further)."""
    p = step / max(1, total)
    if budget_min > 0:
        p = max(p, elapsed_s / (60.0 * budget_min))
    return p


@contextmanager
def trainable_only(model: torch.nn.Module, trains: Callable[[str], bool]) -> Iterator[list[torch.nn.Parameter]]:
    """Train the parameters whose name ``trains`` accepts (yields them); every parameter trains again afterwards."""
    for name, p in model.named_parameters():
        p.requires_grad_(trains(name))
    try:
        yield [p for p in model.parameters() if p.requires_grad]
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


def optimise(run: Run, state: RunState, stage: int, opt: torch.optim.Optimizer, params: list, schedule: Schedule,
             loss: StepLoss, validate: Callable[[], None]) -> None:
    """Step ``opt`` from ``state.step`` until the stage is done; ``state`` follows every step.

    ``loss(progress)`` computes one batch; ``validate()`` runs each epoch and at the end; ``last.pt`` is written every
    ``ckpt_every`` steps and on Ctrl-C.
    """
    from tqdm import tqdm

    cfg = run.cfg
    name = "I" * stage
    run.model.train()
    bar = tqdm(total=schedule.steps, initial=state.step, desc=f"stage {name}", disable=not run.rt.progress, dynamic_ncols=True)
    t0 = time.time() - state.wall_s
    try:
        while (prog := stage_progress(state.step, schedule.steps, state.wall_s, schedule.budget_min)) < 1.0:
            lr = lr_at(state.step, schedule.steps, schedule.peak_lr, schedule.warmup, cfg.lr_min_ratio, prog)
            for g in opt.param_groups:
                g["lr"] = lr
            total, terms = loss(prog)
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            state.step += 1
            state.wall_s = time.time() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{float(total.detach()):.4f}", **{k: f"{v:.4f}" for k, v in terms.items()})
            if state.step % cfg.log_every == 0:
                append_metrics(run, dict(time_s=state.wall_s, stage=stage, step=state.step, kind="train", lr=lr,
                                         loss=float(total.detach()), **terms))
            done = stage_progress(state.step, schedule.steps, state.wall_s, schedule.budget_min) >= 1.0
            if state.step % schedule.steps_per_epoch == 0 or done:
                validate()
            if state.step % cfg.ckpt_every == 0 and run.rt.is_main:
                save_checkpoint(run, "last.pt", state, opt)
    except KeyboardInterrupt:
        if run.rt.is_main:
            p = save_checkpoint(run, "last.pt", state, opt)
            log.warning("interrupted at stage %s step %d; checkpoint %s (continue with --resume)", name, state.step, p)
        raise
    finally:
        bar.close()


def record_validation(run: Run, state: RunState, stage: int, result: dict[str, float]) -> None:
    """Log a validation result (metrics row, history) and write ``best_stage<N>.pt`` when it beats the stage's best."""
    append_metrics(run, dict(time_s=state.wall_s, stage=stage, step=state.step, kind="val", **result))
    state.history.append({"stage": stage, "step": state.step, **result})
    log.info("validation stage %d step %d: %s", stage, state.step, {k: round(v, 5) for k, v in result.items()})
    loss = result["loss"]
    if stage == 1 and loss < state.best_val:
        state.best_val = loss
        save_checkpoint(run, "best_stage1.pt", state, extra={"best_val": loss})
    elif stage == 2 and loss < state.best_val2:
        state.best_val2 = loss
        save_checkpoint(run, "best_stage2.pt", state, extra={"best_val2": loss})
