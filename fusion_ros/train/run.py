"""One training run's fixed parts: this process (device, DDP rank, random streams), the config, the student, ``out_dir``.

DDP is used when launched by ``torchrun`` (``WORLD_SIZE`` > 1); single-process runs never touch ``torch.distributed``.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusion_ros.errors import FusionError
from fusion_ros.model import FusionStudent, create_model
from fusion_ros.model.student import convert_norm
from fusion_ros.train.config import TrainConfig, resolve_path

__all__ = ["Runtime", "Run", "open_run", "close_run", "build_student", "unwrap"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """This process's place in the run: device, DDP rank, random streams, progress bars."""

    device: torch.device
    rank: int
    world: int
    gen: torch.Generator          # augmentation draws
    rng: np.random.Generator      # crop and clip sampling
    progress: bool                # tqdm bars (the main process only)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model for the training step: DistributedDataParallel under DDP, else ``model`` itself."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


@dataclass(frozen=True)
class Run:
    """What every stage works on: the config, this process, the student, ``out_dir``. Training moves the student's
    weights and the random streams; nothing here is replaced."""

    cfg: TrainConfig
    rt: Runtime
    model: FusionStudent
    out: Path                     # out_dir: checkpoints, metrics.csv, the exported model


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_student(cfg: TrainConfig) -> FusionStudent:
    """The student to train: fresh weights, or ``init_checkpoint`` (which must be the same variant); with ``norm``,
    a checkpoint of another norm starts the new one (:func:`convert_norm`)."""
    if not cfg.init_checkpoint:
        return create_model(cfg.model, **({"norm": cfg.norm} if cfg.norm else {}))
    from fusion_ros.export import load_student

    model = load_student(resolve_path(cfg.init_checkpoint), allow_new_modules=True)
    if model.cfg.name != cfg.model:
        raise FusionError(f"init_checkpoint is a '{model.cfg.name}' model but model='{cfg.model}'")
    if cfg.norm and model.cfg.norm != cfg.norm:
        log.info("init_checkpoint has %s norms; starting %s norms from its other weights", model.cfg.norm, cfg.norm)
        model = convert_norm(model, cfg.norm)
    return model.train()


def open_run(cfg: TrainConfig, progress: bool = True) -> Run:
    """Join the DDP group (under ``torchrun``), seed every generator, create ``out_dir`` and the student on its device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    _seed_all(cfg.seed)
    rt = Runtime(device=device, rank=rank, world=world, gen=torch.Generator().manual_seed(cfg.seed + 1000 * rank),
                 rng=np.random.default_rng(cfg.seed + 1000 * rank), progress=progress and rank == 0)
    out = resolve_path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return Run(cfg=cfg, rt=rt, model=build_student(cfg).to(device), out=out)


def close_run(run: Run) -> None:
    """Leave the DDP group once every rank is done (no-op in a single process)."""
    if run.rt.distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> FusionStudent:
    """The student inside a DDP wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model
