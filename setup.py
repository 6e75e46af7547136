"""ament_python package setup; also installs with plain pip (``pip install -e .``)."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusion_ros"
# The ROS launch tests run under `colcon test` (pytest); the launch stack itself comes from ROS (package.xml).
TEST_REQUIRES = ["pytest>=7,<8.4"]


def files(pattern: str) -> list[str]:
    """Regular files matching ``pattern``: data_files copies files only (a folder makes the install fail)."""
    return sorted(f for f in glob(pattern) if os.path.isfile(f))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", files("launch/*.py")),
        (f"share/{PACKAGE}/config", files("config/*.yaml") + files("config/*.xml")),
        (f"share/{PACKAGE}/config/cameras", files("config/cameras/*.yaml")),
        (f"share/{PACKAGE}/config/train", files("config/train/*.yaml")),
        # the shipped models only: models/stage1/ (training intermediates) and models/candidates/ (not shipped) stay out
        (f"share/{PACKAGE}/models", files("models/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="fusion_ros maintainers",
    maintainer_email="fusion-ros@example.com",
    description="Thermal + RGB fusion into one RGB stream for frozen RGB-trained models (ROS 2 node + training).",
    license="Apache-2.0",
    # colcon reads the test dependencies from extras_require (setuptools ignores tests_require)
    extras_require={"test": TEST_REQUIRES},
    entry_points={
        "console_scripts": [
            "fusion-ros = fusion_ros.cli:main",
            "fusion_node = fusion_ros.ros.node:main",
        ],
    },
)
