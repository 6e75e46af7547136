"""ament_python package setup; also installs with plain pip (``pip install -e .``)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusion_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/cameras", glob("config/cameras/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="fusion_ros maintainers",
    maintainer_email="fusion-ros@example.com",
    description="Thermal + RGB fusion into one RGB stream for frozen RGB-trained models (ROS 2 node + training).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fusion-ros = fusion_ros.cli:main",
            "fusion_node = fusion_ros.ros.node:main",
        ],
    },
)
