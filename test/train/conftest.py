"""Fixtures of the training tests: a pair root of a few shared RoadScene training pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusion_ros.train.data import find_pairs


@pytest.fixture
def roadscene_pairs(tmp_path, shared_dir):
    """``make(n)``: a pair root under ``tmp_path`` linking the first ``n`` shared RoadScene training pairs."""

    def make(n: int) -> Path:
        root = tmp_path / "pairs"
        for sub in ("ir", "vi"):
            (root / "roadscene" / sub).mkdir(parents=True, exist_ok=True)
        for rec in find_pairs(shared_dir / "data" / "pairs" / "train" / "roadscene")[:n]:
            os.symlink(rec.ir, root / "roadscene" / "ir" / rec.ir.name)
            os.symlink(rec.vi, root / "roadscene" / "vi" / rec.vi.name)
        return root

    return make
