"""Parameter declarations: one source (the dataclasses), the shipped YAML and the README table agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fusion_ros.errors import ConfigError
from fusion_ros.ros.params import _build, apply_parameter_changes, parameter_specs, parameter_table_markdown

REPO = Path(__file__).resolve().parents[2]
DOCUMENTED_PARAMS = ("model_path", "backend", "precision", "engine_cache_dir", "use_memory", "memory_reset_gap_s",
                "approximate_sync_slop_s", "queue_size", "thermal_timeout_s", "thermal_range", "homography",
                "inference_size", "output_encoding")


def test_issue_parameters_declared():
    names = [s.name for s in parameter_specs()]
    assert len(names) == len(set(names))
    assert set(DOCUMENTED_PARAMS) <= set(names)


def test_shipped_yaml_matches_defaults():
    params = yaml.safe_load((REPO / "config" / "fusion.yaml").read_text())["/**"]["ros__parameters"]
    assert params == {s.name: s.default for s in parameter_specs()}


def test_table_has_every_parameter():
    table = parameter_table_markdown()
    for s in parameter_specs():
        assert f"| `{s.name}` |" in table


def test_validation_names_the_parameter():
    values = {s.name: s.default for s in parameter_specs()}
    settings = _build(values)
    with pytest.raises(ConfigError, match="backend"):
        _build({**values, "backend": "magic"})
    with pytest.raises(ConfigError, match="engine_cache_dir|read-only"):
        apply_parameter_changes(settings, {"engine_cache_dir": "/tmp"})
    with pytest.raises(ConfigError, match="output_encoding"):
        apply_parameter_changes(settings, {"output_encoding": "bayer_rggb8"})
    assert apply_parameter_changes(settings, {"agc_smoothing": 0.5}).fuser.agc_smoothing == 0.5
