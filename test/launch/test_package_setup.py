"""Packaging without a ROS install: setup.py's data files and test extras, and the lock of every dependency.

``colcon build`` copies ``data_files`` with setuptools' ``install_data``: a folder in the list fails the whole build
("can't copy 'models/stage1': doesn't exist or not a regular file"). ``colcon test`` picks pytest only when the
package declares it in ``extras_require['test']`` (setuptools ignores ``tests_require``), else it runs unittest and
finds 0 tests. The lock pins everything ``make venv`` installs, with a pytest that launch_testing loads (< 8.4).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"


def _setup_keywords() -> dict:
    """setup()'s arguments as colcon reads them: setup.py run up to the point setup() was called."""
    code = ("import json; from distutils.core import run_setup; d = run_setup('setup.py', stop_after='init'); "
            "print(json.dumps({'data_files': d.data_files, 'extras_require': d.extras_require, "
            "'tests_require': getattr(d, 'tests_require', None)}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: '{line}' is not an exact pin (name==version)"
            pins[_normalise(name)] = version
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_install_data_copies_every_data_file(tmp_path):
    # the real install step colcon runs; it fails on a folder in data_files
    proc = subprocess.run([sys.executable, "setup.py", "-q", "install_data", "--install-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    share = tmp_path / "share" / "fusion_ros"
    for rel in ("package.xml", "launch/fusion.launch.py", "config/fusion.yaml", "config/fastdds_shm.xml",
                "models/fusion_lite.onnx", "models/fusion_lite.json"):
        assert (share / rel).is_file(), f"share/fusion_ros/{rel} not installed"
    assert (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "fusion_ros").is_file()
    assert not (share / "models" / "stage1").exists()


def test_data_files_are_files_only():
    for target, files in _setup_keywords()["data_files"]:
        for f in files:
            assert (REPO / f).is_file(), f"data_files[{target}] lists {f}, which is not a regular file"


def test_colcon_finds_pytest_in_the_test_extras():
    keywords = _setup_keywords()
    test_extras = keywords["extras_require"].get("test", [])
    pytest_spec = next((r for r in test_extras if re.match(r"pytest\b", r)), None)
    assert pytest_spec, f"extras_require['test'] lacks pytest: {test_extras}"
    assert "<8.4" in pytest_spec.replace(" ", ""), f"{pytest_spec}: launch_testing's plugins need pytest < 8.4"
    assert not keywords["tests_require"], "tests_require is ignored by setuptools; use extras_require['test']"


def test_lock_pins_every_requirement_with_a_pytest_launch_testing_loads():
    if not LOCK.is_file():
        pytest.fail("requirements.lock missing: run make lock")
    pins = _pins(LOCK)
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = _normalise(re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0])
            assert name in pins, f"requirements.lock does not pin {name} (run make lock)"
    for name in ("colcon-common-extensions", "colcon-core", "launch", "launch-pytest", "launch-ros", "ros2launch",
                 "pip", "setuptools"):
        assert name in pins, f"requirements.lock does not pin {name} (run make lock)"
    major, minor = (int(x) for x in pins["pytest"].split(".")[:2])
    assert (8, 0) <= (major, minor) < (8, 4), f"pytest {pins['pytest']}: launch_testing loads on 8.0 to 8.3"


def test_make_venv_installs_through_the_lock():
    makefile = (REPO / "Makefile").read_text()
    venv_rule = makefile.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "$(LOCK)" in venv_rule.splitlines()[0], "the venv must be rebuilt when the lock changes"
    assert "-r requirements.txt -c $(LOCK)" in venv_rule
    assert "LOCK   := requirements.lock" in makefile and "\nlock:" in makefile
