"""The committed parameter table equals the one generated from the node's declared parameters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fusion_ros.ros.params import parameter_specs

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("gen_param_table", REPO / "tools" / "gen_param_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_table_is_generated_one():
    tool = _tool()
    text = (REPO / "docs" / "parameters.md").read_text()
    assert tool.replace_block(text, tool.generated_table()) == text, \
        "docs/parameters.md is out of date: run .venv/bin/python tools/gen_param_table.py"


def test_table_has_one_row_per_parameter_with_default():
    table = _tool().generated_table()
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [s.name for s in parameter_specs()]
    for s, row in zip(parameter_specs(), rows):
        assert f"| {s.type} |" in row, row
        assert repr(s.default) in row or f'"{s.default}"' in row, f"default of {s.name} missing: {row}"


def test_replace_block_keeps_surrounding_text_and_rejects_missing_markers(tmp_path):
    tool = _tool()
    text = f"intro\n{tool.BEGIN}\nold\n{tool.END}\noutro\n"
    assert tool.replace_block(text, "NEW") == f"intro\n{tool.BEGIN}\nNEW\n{tool.END}\noutro\n"
    with pytest.raises(ValueError, match="expected exactly one"):
        tool.replace_block("no markers", "NEW")
    stale = tmp_path / "p.md"
    stale.write_text(text)
    assert tool.main([str(stale), "--check"]) == 1
    assert stale.read_text() == text          # --check never writes
    assert tool.main([str(stale)]) == 0
    assert tool.main([str(stale), "--check"]) == 0
    assert tool.main([str(tmp_path / "missing.md")]) == 2
