"""The model artifact (ONNX + sidecar + weights): checked at open, written atomically, read without torch."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_ros.errors import ConfigError
from fusion_ros.model.artifact import Artifact, open_artifact, read_sidecar, write_artifact

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def _copy_model(name: str, dst: Path, stem: str = "m") -> Path:
    """Copy the shipped model ``fusion_<name>.*`` to ``dst/<stem>.*``; returns the .onnx."""
    dst.mkdir(parents=True, exist_ok=True)
    for ext in (".onnx", ".json", ".pt"):
        shutil.copy(MODELS / f"fusion_{name}{ext}", dst / f"{stem}{ext}")
    return dst / f"{stem}.onnx"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shipped_models_open_and_describe_their_memory(tmp_path) -> None:
    art = open_artifact(_copy_model("lite", tmp_path))
    assert (art.model_name, art.stride, art.memory_channels) == ("lite", 8, 81)
    art.check_graph_inputs({"thermal": [1, 1, "H", "W"], "visible": [1, 3, "H", "W"], "memory": [1, 81, "h", "w"]})


def test_onnx_with_another_models_sidecar_is_refused(tmp_path, other_model) -> None:
    onnx = _copy_model("lite", tmp_path)
    shutil.copy(other_model.with_suffix(".json"), onnx.with_suffix(".json"))
    with pytest.raises(ConfigError, match=r"model_path '.*m\.onnx'.*another ONNX file.*(sidecar exported with this|re-export)"):
        open_artifact(onnx)


def test_garbage_onnx_is_refused(tmp_path) -> None:
    onnx = _copy_model("lite", tmp_path)
    onnx.write_bytes(b"this is not an ONNX graph")
    with pytest.raises(ConfigError, match="model_path.*sha256"):
        open_artifact(onnx)


@pytest.mark.parametrize("text, why", [('{"stride": 8, "memory_chan', "not valid JSON"),
                                       ('{"stride": 8}', "lacks onnx_sha256, memory_channels"),
                                       ("[1, 2]", "lacks onnx_sha256")])
def test_broken_sidecar_is_refused_with_the_fix(tmp_path, text, why) -> None:
    onnx = _copy_model("lite", tmp_path)
    onnx.with_suffix(".json").write_text(text)
    with pytest.raises(ConfigError, match=f"model_path.*{why}.*fusion-ros export --checkpoint .*m.pt --out .*m.onnx --force"):
        read_sidecar(onnx)


def test_missing_sidecar_names_model_path(tmp_path) -> None:
    onnx = _copy_model("lite", tmp_path)
    onnx.with_suffix(".json").unlink()
    with pytest.raises(ConfigError, match="model_path.*sidecar .*m.json not found"):
        open_artifact(onnx)


def test_graph_inputs_are_held_against_the_sidecar(tmp_path) -> None:
    side = read_sidecar(_copy_model("lite", tmp_path))
    art = Artifact(tmp_path / "m.onnx", side)
    good = {"thermal": [1, 1, "H", "W"], "visible": [1, 3, "H", "W"], "memory": [1, 81, "h", "w"]}
    art.check_graph_inputs(good)
    art.check_graph_inputs({**good, "memory": (1, -1, -1, -1)})      # a dynamic dim is no contradiction
    with pytest.raises(ConfigError, match=r"'memory' input is \(1, 97, 'h', 'w'\).*describes \(1, 81, h, w\)"):
        art.check_graph_inputs({**good, "memory": [1, 97, "h", "w"]})
    with pytest.raises(ConfigError, match="expected thermal, visible, memory"):
        art.check_graph_inputs({"thermal": good["thermal"], "visible": good["visible"]})


def test_weights_of_another_model_are_refused(tmp_path, other_model) -> None:
    from fusion_ros.model.artifact import load_student

    art = open_artifact(_copy_model("lite", tmp_path))
    art.check_weights(load_student(art.onnx_path).cfg)
    with pytest.raises(ConfigError, match="weights belong to another model.*memory_channels 97 in m.pt, 81 in the sidecar"):
        art.check_weights(load_student(other_model.with_suffix(".pt")).cfg)


def test_an_interrupted_write_leaves_the_previous_model(tmp_path) -> None:
    from fusion_ros.model import create_model

    onnx = _copy_model("lite", tmp_path)
    before = _digests(tmp_path)
    model = create_model("lite")

    def write_graph(path: Path) -> None:
        path.write_bytes(b"half a graph")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_artifact(onnx, write_graph, model.cfg, model.state_dict(), 17)
    assert _digests(tmp_path) == before, "the previous files are untouched and no temporary file is left"


def test_write_then_open_round_trip(tmp_path) -> None:
    from fusion_ros.model import create_model

    model = create_model("lite")
    graph = (MODELS / "fusion_lite.onnx").read_bytes()
    out = write_artifact(tmp_path / "new" / "x.onnx", lambda p: p.write_bytes(graph), model.cfg, model.state_dict(), 17,
                         meta={"source": "test"})
    art = open_artifact(out)
    assert art.sidecar["meta"] == {"source": "test"} and art.memory_channels == model.cfg.state_channels
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.json", "x.onnx", "x.pt"]


def test_opening_an_artifact_imports_no_torch() -> None:
    code = ("import sys; from fusion_ros.model.artifact import open_artifact; "
            f"a = open_artifact({str(MODELS / 'fusion_lite.onnx')!r}); "
            "print(a.memory_channels, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["81", "False"], out


def test_shipped_lite_is_batch_norm_with_every_norm_folded_away() -> None:
    """models/fusion_lite: a BatchNorm student whose sidecar and weights belong to its graph, no norm left to run;
    models/candidates/fusion_lite_ln, the LayerNorm lite shipped before it, opens the same way."""
    import onnx

    from fusion_ros.model.artifact import load_student, weights_path

    ops = {}
    for name, path, norm in (("shipped", MODELS / "fusion_lite.onnx", "batch"),
                             ("layer", MODELS / "candidates" / "fusion_lite_ln.onnx", "layer")):
        art = open_artifact(path)
        assert (art.model_name, art.sidecar["config"].get("norm", "layer")) == ("lite", norm), name
        art.check_weights(load_student(weights_path(path)).cfg)
        ops[name] = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert not {"BatchNormalization", "LayerNormalization"} & set(ops["shipped"]), "a BatchNorm was left unfolded"
    # Each LayerNorm of the LayerNorm graph is two channel means; the BatchNorm graph keeps only the other reductions.
    assert ops["shipped"].count("ReduceMean") < ops["layer"].count("ReduceMean") and len(ops["shipped"]) < len(ops["layer"])
