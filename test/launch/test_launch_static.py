"""Static checks of the launch files and parameter files (no ROS install needed).

``launch``/``launch_ros`` are not installable here, so the launch files are read with ``ast``: the arguments,
their descriptions and choices, the remappings onto the node's topic names, and the absence of side effects.
The parameter files are checked against the node's declared parameters (``fusion_ros.ros.params``), with the
types ROS enforces (an integer given for a double parameter is rejected at start-up).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from fusion_ros.engine import BACKENDS
from fusion_ros.engine.base import EngineConfig
from fusion_ros.pipeline import FuserConfig, SyncConfig
from fusion_ros.ros.params import NodeConfig, NodeSettings, apply_parameter_changes, parameter_specs

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "fusion.launch.py"
BAG_LAUNCH = REPO / "launch" / "fusion_bag.launch.py"

REQUIRED_ARGS = ("rgb_image_topic", "rgb_info_topic", "thermal_image_topic", "fused_image_topic", "namespace",
                 "params_file", "model_path", "backend", "use_sim_time", "log_level")
# node-side topic -> the launch argument it is remapped to (fused/camera_info follows fused_image_topic)
REMAPS = {"rgb/image_raw": "rgb_image_topic", "rgb/camera_info": "rgb_info_topic",
          "thermal/image_raw": "thermal_image_topic", "fused/image_raw": "fused_image_topic",
          "fused/camera_info": "fused_image_topic"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _assigned(tree: ast.Module, name: str) -> ast.AST:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    raise AssertionError(f"{name} not assigned at module level")


def _constant(node: ast.AST, constants: dict[str, object]):
    """A literal, or a module-level constant referenced by name; None for anything computed."""
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _module_constants(tree: ast.Module) -> dict[str, object]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _arguments(path: Path) -> dict[str, dict]:
    """``ARGUMENTS`` rows ``(name, default, description, choices)`` -> {name: {...}}."""
    tree = _tree(path)
    consts = _module_constants(tree)
    table = _assigned(tree, "ARGUMENTS")
    assert isinstance(table, ast.List), "ARGUMENTS must be a literal list of (name, default, description, choices)"
    out = {}
    for row in table.elts:
        assert isinstance(row, ast.Tuple) and len(row.elts) == 4, ast.dump(row)
        name, default, description, choices = row.elts
        out[_constant(name, consts)] = {"default": _constant(default, consts), "default_node": default,
                                        "description": _constant(description, consts),
                                        "choices": _constant(choices, consts)}
    return out


def _args_used(expr: ast.AST, bound: dict[str, set[str]]) -> set[str]:
    """Launch arguments an expression reads: ``arg("x")`` calls and variables bound to them."""
    used: set[str] = set()
    for node in ast.walk(expr):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "arg"
                and node.args and isinstance(node.args[0], ast.Constant)):
            used.add(node.args[0].value)
        elif isinstance(node, ast.Name) and node.id in bound:
            used |= bound[node.id]
    return used


def _function(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"function {name} not found")


class TestFusionLaunch:
    def test_arguments_present_with_descriptions(self):
        args = _arguments(LAUNCH)
        missing = [a for a in REQUIRED_ARGS if a not in args]
        assert not missing, f"launch arguments missing: {missing}"
        for name, a in args.items():
            assert isinstance(a["description"], str) and len(a["description"]) > 15, f"{name}: no real description"

    def test_enumerated_arguments_have_choices(self):
        args = _arguments(LAUNCH)
        # '' = keep the params file's value; the rest must be exactly the engine's backends
        assert set(args["backend"]["choices"]) == {"", *BACKENDS}
        assert args["backend"]["default"] == ""
        assert args["model_path"]["default"] == ""
        assert set(args["use_sim_time"]["choices"]) == {"true", "false"}
        assert args["use_sim_time"]["default"] in args["use_sim_time"]["choices"]
        assert args["log_level"]["default"] in args["log_level"]["choices"]
        assert {"debug", "info", "warn", "error"} <= set(args["log_level"]["choices"])

    def test_topic_defaults_are_the_node_names(self):
        args = _arguments(LAUNCH)
        for topic, arg in REMAPS.items():
            if topic != "fused/camera_info":
                assert args[arg]["default"] == topic, f"{arg} default should leave {topic} unremapped"

    def test_params_file_defaults_to_installed_fusion_yaml(self):
        node = _arguments(LAUNCH)["params_file"]["default_node"]
        parts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
        assert parts[-2:] == ["config", "fusion.yaml"], ast.dump(node)

    def test_remappings_target_node_topics(self):
        tree = _tree(LAUNCH)
        setup = _function(tree, "_launch_setup")
        remaps = None
        for node in ast.walk(setup):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "remappings"
                                                    for t in node.targets):
                remaps = node.value
        assert isinstance(remaps, ast.List), "remappings list not found in _launch_setup"
        # local variables bound to launch arguments: fused_image = arg("fused_image_topic")
        bound = {}
        for node in ast.walk(setup):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                used = _args_used(node.value, {})
                if used:
                    bound[node.targets[0].id] = used
        found = {}
        for pair in remaps.elts:
            assert isinstance(pair, ast.Tuple) and isinstance(pair.elts[0], ast.Constant)
            found[pair.elts[0].value] = _args_used(pair.elts[1], bound)
        assert set(found) == set(REMAPS), f"remapped {sorted(found)}, expected {sorted(REMAPS)}"
        for topic, arg in REMAPS.items():
            assert found[topic] == {arg}, f"{topic} is remapped from {found[topic]}, expected launch argument {arg}"
        # the node's parameters are not renamed: the only parameter dict keys are the node's own names
        names = {s.name for s in parameter_specs()} | {"use_sim_time"}
        for node in ast.walk(setup):
            if isinstance(node, ast.Dict):
                for k in node.keys:
                    assert isinstance(k, ast.Constant) and k.value in names, f"unknown parameter {ast.unparse(k)}"
        overridden = re.search(r"for name in \(([^)]*)\)", ast.unparse(setup))
        assert overridden and set(re.findall(r"'(\w+)'", overridden.group(1))) <= names

    def test_fused_info_is_sibling_of_fused_image(self):
        tree = _tree(LAUNCH)
        ns: dict = {}
        exec(compile(ast.Module([_function(tree, "sibling_info_topic")], []), str(LAUNCH), "exec"), ns)  # noqa: S102
        f = ns["sibling_info_topic"]
        assert f("fused/image_raw") == "fused/camera_info"
        assert f("/camera/fused/image_raw") == "/camera/fused/camera_info"
        assert f("/fused_image") == "/camera_info"
        assert f("image") == "camera_info"

    def test_node_is_the_package_entry_point(self):
        consts = _module_constants(_tree(LAUNCH))
        setup_py = (REPO / "setup.py").read_text()
        assert re.search(rf"\"{consts['EXECUTABLE']} = fusion_ros\.ros\.node:main\"", setup_py)
        assert f"<name>{consts['PACKAGE']}</name>" in (REPO / "package.xml").read_text()
        assert consts["NODE_NAME"] == "fusion_node"


@pytest.mark.parametrize("path", [LAUNCH, BAG_LAUNCH], ids=lambda p: p.name)
def test_launch_file_has_no_side_effects(path):
    tree = _tree(path)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("eval", "exec", "open", "__import__"), f"{path.name} calls {node.func.id}"
        elif isinstance(node, ast.Attribute):
            assert node.attr not in ("system", "popen", "remove", "makedirs", "mkdir", "write_text"), \
                f"{path.name} uses .{node.attr}"
    assert not imported & {"subprocess", "shutil", "PythonExpression", "importlib"}, imported
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if path == LAUNCH:
        assert "ExecuteProcess" not in imported, "fusion.launch.py starts the node only"


def test_bag_launch_arguments():
    args = _arguments(BAG_LAUNCH)
    assert args["bag"]["default"] is None and isinstance(args["bag"]["default_node"], ast.Constant), \
        "bag must be required (no default)"
    for name, a in args.items():
        assert isinstance(a["description"], str) and len(a["description"]) > 15, name
    assert set(args["loop"]["choices"]) == {"true", "false"}
    text = BAG_LAUNCH.read_text()
    # replays on sim time through the same launch file
    assert '"fusion.launch.py"' in text and '{"use_sim_time": "true"}' in text
    assert '"--clock"' in text


# --- parameter files ---------------------------------------------------------------------------------------------

NAMESPACE_PROOF_KEYS = ("/**", "/**/fusion_node")
_PY_TYPES = {"bool": (bool,), "integer": (int,), "double": (float,), "string": (str,)}


def _params(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and len(doc) == 1, f"{path}: one node key expected"
    (key, body), = doc.items()
    # `fusion_node:` matches only the node in the root namespace: with `namespace:=ns1` the file would be ignored
    assert key in NAMESPACE_PROOF_KEYS, \
        f"{path}: node key {key!r} does not match a namespaced fusion_node; use one of {NAMESPACE_PROOF_KEYS}"
    return body["ros__parameters"]


def _check_types(path: Path, values: dict) -> None:
    specs = {s.name: s for s in parameter_specs()}
    unknown = sorted(set(values) - set(specs))
    assert not unknown, f"{path.name}: unknown parameters {unknown}"
    for name, v in values.items():
        t = specs[name].type
        if t.endswith("_array"):
            elem = int if t == "integer_array" else float
            assert isinstance(v, list) and all(type(x) is elem for x in v), \
                f"{path.name}: {name} must be a list of {elem.__name__} (ROS is strict), got {v!r}"
        else:
            assert type(v) in _PY_TYPES[t], f"{path.name}: {name} must be {t}, got {v!r} ({type(v).__name__})"


def _defaults() -> NodeSettings:
    return NodeSettings(engine=EngineConfig(), fuser=FuserConfig(), sync=SyncConfig(), node=NodeConfig())


@pytest.mark.parametrize("path", sorted((REPO / "config" / "cameras").glob("*.yaml")), ids=lambda p: p.name)
def test_camera_examples_are_valid_parameters(path):
    values = _params(path)
    _check_types(path, values)
    settings = apply_parameter_changes(_defaults(), values)  # raises ConfigError naming the parameter
    assert settings.fuser.registration.homography == tuple(values.get("homography", settings.fuser.homography))


def test_fusion_yaml_lists_every_parameter():
    path = REPO / "config" / "fusion.yaml"
    assert path.is_file(), "config/fusion.yaml missing"
    values = _params(path)
    missing = [s.name for s in parameter_specs() if s.name not in values]
    assert not missing, f"config/fusion.yaml lacks parameters {missing}"
    _check_types(path, values)


def test_parameter_tables_list_every_parameter():
    names = [s.name for s in parameter_specs()]
    table = (REPO / "docs" / "parameters.md").read_text()
    missing = [n for n in names if f"| `{n}` |" not in table]
    assert not missing, f"docs/parameters.md lacks {missing}; run tools/gen_param_table.py"
    readme = REPO / "README.md"
    if not readme.is_file() or "<!-- BEGIN PARAMETERS" not in readme.read_text():
        pytest.skip("README.md has no generated parameter table yet (docs/parameters.md is checked above)")
    missing = [n for n in names if f"| `{n}` |" not in readme.read_text()]
    assert not missing, f"README parameter table lacks {missing}; run tools/gen_param_table.py --readme"
