"""Every shipped params file reaches fusion_node in any namespace, read by rcl's own YAML parser (real rclpy).

A params file keyed ``fusion_node:`` matches only ``/fusion_node``: started with ``namespace:=ns1`` (or
``-r __ns:=/ns1``) the node would silently run on its defaults. ``/**`` matches every name and namespace.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (the ros-jazzy-* wheels of requirements.txt)")
from rclpy.context import Context  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
PARAMS_FILES = [REPO / "config" / "fusion.yaml", *sorted((REPO / "config" / "cameras").glob("*.yaml"))]


def _file_values(path: Path) -> dict:
    (body,) = yaml.safe_load(path.read_text()).values()
    return body["ros__parameters"]


def _received(path: Path, namespace: str) -> dict:
    """The parameter overrides that fusion_node in ``namespace`` receives from ``--params-file path``."""
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(path)], domain_id=random.randint(1, 200))
    try:
        node = rclpy.create_node("fusion_node", namespace=namespace, context=ctx, start_parameter_services=False,
                                 automatically_declare_parameters_from_overrides=True)
        try:
            values = {}
            for name, param in node.get_parameters_by_prefix("").items():
                value = param.value
                values[name] = list(value) if not isinstance(value, (str, bytes)) and hasattr(value, "__len__") \
                    else value
            return values
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


@pytest.mark.parametrize("namespace", ["", "/ns1", "/robot/front"], ids=["root", "ns1", "nested"])
@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_params_file_applies_in_every_namespace(path, namespace):
    expected = _file_values(path)
    received = _received(path, namespace)
    missing = sorted(set(expected) - set(received))
    assert not missing, f"{path.name} does not reach fusion_node in namespace '{namespace or '/'}': {missing}"
    for name, value in expected.items():
        assert received[name] == value, f"{path.name}: {name} arrived as {received[name]!r}, file has {value!r}"
