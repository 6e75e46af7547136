"""What a run keeps in ``out_dir`` while it trains: checkpoints (written atomically), the point ``--resume`` continues from,
and ``metrics.csv``.

A checkpoint holds ``config`` + ``state_dict`` (the export's weights format, so ``fusion_ros.export.load_student`` reads any
checkpoint), the :class:`RunState`, every random stream and, for ``last.pt``, the optimiser.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fusion_ros.config import to_dict
from fusion_ros.train.config import config_dict
from fusion_ros.train.run import Run

__all__ = ["RunState", "ResumePoint", "save_checkpoint", "load_resume", "load_weights", "append_metrics", "METRICS_COLUMNS"]

log = logging.getLogger(__name__)

METRICS_COLUMNS = ["time_s", "stage", "step", "kind", "lr", "loss", "pix", "mfm", "ssim", "grad", "temporal"]


@dataclass
class RunState:
    """How far the run is: the stage and its step, the best validation loss of each stage, what ran."""

    stage: int = 1
    step: int = 0                                  # optimiser steps of the current stage
    best_val: float = math.inf                     # stage I
    best_val2: float = math.inf                    # stage II
    wall_s: float = 0.0                            # wall seconds of the current stage
    history: list = field(default_factory=list)    # every validation result, {"stage", "step", terms...}
    done: dict = field(default_factory=dict)       # per stage: steps and wall seconds actually run


@dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: a fresh state, or the one in ``last.pt`` with the optimiser of the stage it was written in."""

    state: RunState = field(default_factory=RunState)
    stage: int = 1
    optimizer: dict | None = None

    def optimizer_for(self, stage: int) -> dict | None:
        """The optimiser state to continue ``stage`` with, if ``last.pt`` was written in it."""
        return self.optimizer if stage == self.stage else None


def save_checkpoint(run: Run, name: str, state: RunState, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``<out_dir>/<name>`` under a temporary name and rename it into place; returns the path."""
    blob = {"config": to_dict(run.model.cfg), "train_config": config_dict(run.cfg),
            "state_dict": run.model.state_dict(), "stage": state.stage, "step": state.step,
            "best_val": state.best_val, "best_val2": state.best_val2, "wall_s": state.wall_s, "history": state.history,
            "done": state.done,
            "torch_rng": torch.get_rng_state(), "gen": run.rt.gen.get_state(), "np_rng": run.rt.rng.bit_generator.state}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    blob.update(extra or {})
    path = run.out / name
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_resume(run: Run) -> ResumePoint:
    """Continue from ``<out_dir>/last.pt``: its weights go into ``run.model`` and its random streams into this process."""
    path = run.out / "last.pt"
    if not path.is_file():
        log.warning("--resume: no checkpoint at %s; starting fresh", path)
        return ResumePoint()
    blob = torch.load(path, map_location="cpu", weights_only=False)
    run.model.load_state_dict(blob["state_dict"])
    state = RunState(blob["stage"], blob["step"], blob["best_val"], blob.get("best_val2", math.inf), blob.get("wall_s", 0.0),
                     blob.get("history", []), blob.get("done", {}))
    torch.set_rng_state(blob["torch_rng"])
    run.rt.gen.set_state(blob["gen"])
    run.rt.rng.bit_generator.state = blob["np_rng"]
    log.info("resumed stage %d at step %d from %s", state.stage, state.step, path)
    return ResumePoint(state, blob["stage"], blob.get("optimizer"))


def load_weights(model: torch.nn.Module, path: Path) -> bool:
    """Load the weights of the checkpoint at ``path`` into ``model`` when the file exists; returns whether it did."""
    if not path.is_file():
        return False
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
    return True


def append_metrics(run: Run, row: dict) -> None:
    """Append one row to ``<out_dir>/metrics.csv`` (main process only; the header with the first row)."""
    if not run.rt.is_main:
        return
    path = run.out / "metrics.csv"
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
