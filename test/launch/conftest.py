"""Fixtures of the launch tests: ROS state under a temporary folder, the package built with colcon, and CI's rule
that these tests run instead of skipping.

The launch stack (``launch``, ``launch_ros``, ``launch_pytest``, ``ros2 launch``) and colcon come from a ROS 2
install or from ``make test-ros`` (the Jazzy wheels in ``../shared/wheels/ros-jazzy-launch`` plus colcon from PyPI).
Without them the tests that need them are skipped with the reason printed; with ``FUSION_ROS_REQUIRE_LAUNCH=1``
(set by ``make test-ros``) such a skip is reported as a failure instead.
"""

from __future__ import annotations

import os
import random

import pytest

from ros_workspace import PACKAGE, Workspace, build_workspace, tool

REQUIRE_ENV = "FUSION_ROS_REQUIRE_LAUNCH"
INSTALL_HINT = "make test-ros installs the ROS 2 launch stack and colcon into .venv"
# Where ROS and colcon keep logs and state; pointed into the test's temporary folder.
STATE_VARS = ("ROS_LOG_DIR", "ROS_HOME", "COLCON_HOME", "ROS_DOMAIN_ID")


def launch_tests_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped at import (``importorskip``) fails when the launch tests are required."""
    outcome = yield
    report = outcome.get_result()
    if launch_tests_required() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ENV}=1 but the module was skipped: {_skip_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test skipped at run time fails when the launch tests are required."""
    outcome = yield
    report = outcome.get_result()
    if launch_tests_required() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ENV}=1 but the test was skipped: {_skip_reason(report.longrepr)}"


@pytest.fixture(scope="session", autouse=True)
def ros_state_dir(tmp_path_factory):
    """ROS logs, ROS_HOME and COLCON_HOME of this session (and of every process it starts) in a temporary folder,
    never in $HOME or the repository; a random ROS_DOMAIN_ID unless one is set."""
    base = tmp_path_factory.mktemp("ros_state")
    saved = {name: os.environ.get(name) for name in STATE_VARS}
    os.environ.update(ROS_LOG_DIR=str(base / "log"), ROS_HOME=str(base / "ros_home"),
                      COLCON_HOME=str(base / "colcon_home"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    yield base
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def colcon_workspace(tmp_path_factory, ros_state_dir) -> Workspace:
    """``colcon build --packages-select fusion_ros`` of this repository into a temporary workspace, sourced."""
    if tool("colcon") is None:
        pytest.skip(f"colcon not found ({INSTALL_HINT}; on a ROS 2 install: apt install python3-colcon-common-extensions)")
    return build_workspace(tmp_path_factory.mktemp("colcon_ws"))


@pytest.fixture(scope="session")
def installed_package(request) -> str:
    """The install prefix of fusion_ros that ``launch_ros`` finds: the one already in the ament index (under
    ``colcon test`` or in a sourced workspace), else a fresh colcon build whose environment this process takes."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return get_package_prefix(PACKAGE)
    except (PackageNotFoundError, OSError):       # OSError: AMENT_PREFIX_PATH unset, nothing is sourced
        pass
    ws = request.getfixturevalue("colcon_workspace")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(ws.env)
    request.addfinalizer(lambda: (os.environ.clear(), os.environ.update(saved)))
    return get_package_prefix(PACKAGE)
