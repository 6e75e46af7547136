"""``teacher-select`` in ``fusion-ros eval``: the training selection target computed from teacher folders."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from fusion_ros.cli import main
from fusion_ros.errors import ConfigError
from fusion_ros.eval import runner
from fusion_ros.eval.runner import EvalConfig, Method, method_output, parse_method, prepare_methods
from fusion_ros.train.targets import SelectParams, select_target, source_lumas


def test_parse_teacher_select():
    m = parse_method("sel=teacher-select:SeAFusion,IFCNN@window=5,tau=0,measure=ssim")
    assert (m.name, m.kind, m.members) == ("sel", "teacher-select", ("SeAFusion", "IFCNN"))
    assert m.select == SelectParams(measure="ssim", window=5, tau=0.0)
    bare = parse_method("teacher-select:A,B@tau=0.1")
    assert (bare.name, bare.members, bare.select.tau) == ("teacher-select", ("A", "B"), 0.1)
    assert parse_method("teacher-select").select == SelectParams()
    with pytest.raises(ConfigError, match="select_window"):
        parse_method("teacher-select@window=4")
    with pytest.raises(ConfigError, match="key=value"):
        parse_method("teacher-select@size=4")
    with pytest.raises(ConfigError, match="unknown \\['C'\\]"):
        prepare_methods([Method("A", "folder", "."), parse_method("teacher-select:A,C")], EvalConfig(add_baselines=False))


@pytest.fixture
def tno_pair(tmp_path, shared_dir):
    data = shared_dir / "data"
    for sub in ("ir", "vi"):
        (tmp_path / "pairs" / "tno" / sub).mkdir(parents=True)
        shutil.copy(data / "pairs" / "dev" / "tno" / sub / "07.png", tmp_path / "pairs" / "tno" / sub / "07.png")
    return tmp_path / "pairs", data / "teachers"


def test_eval_output_is_the_training_target(tno_pair):
    pairs, teachers = tno_pair
    methods = prepare_methods([parse_method(f"SeAFusion={teachers / 'SeAFusion' / 'dev'}"),
                               parse_method(f"IFCNN={teachers / 'IFCNN' / 'dev'}"),
                               parse_method("sel=teacher-select@tau=0.02,window=9")], EvalConfig(add_baselines=False))
    pair = runner.find_pairs(pairs)[0]
    ir = cv2.imread(str(pair.ir_path), cv2.IMREAD_GRAYSCALE)
    vis = cv2.cvtColor(cv2.imread(str(pair.vi_path)), cv2.COLOR_BGR2RGB)
    outs: dict = {}
    for m in methods:
        outs[m.name] = method_output(m, pair, ir, vis, outs)
    # The members default to every folder method, in sorted order.
    assert methods[2].members == ("IFCNN", "SeAFusion")
    ys = np.stack([cv2.imread(str(teachers / t / "dev" / "tno" / "07.png"), cv2.IMREAD_GRAYSCALE)
                   for t in ("IFCNN", "SeAFusion")]).astype(np.float32) / 255.0
    want, _ = select_target(ys, *source_lumas(ir, vis), SelectParams(tau=0.02, window=9))
    assert outs["sel"].dtype == np.uint8 and outs["sel"].shape == ir.shape
    assert np.abs(outs["sel"].astype(np.float32) - want * 255.0).max() <= 0.5 + 1e-3
    assert not np.array_equal(outs["sel"], outs["SeAFusion"]) and not np.array_equal(outs["sel"], outs["IFCNN"])


def test_eval_cli_row(tno_pair, capsys):
    pairs, teachers = tno_pair
    rc = main(["eval", "--pairs", str(pairs), "--methods", f"SeAFusion={teachers / 'SeAFusion' / 'dev'}",
               f"IFCNN={teachers / 'IFCNN' / 'dev'}", "sel=teacher-select:SeAFusion,IFCNN@tau=0.02",
               "--metrics", "Qabf", "--no-speed", "--jobs", "1", "--json", "--quiet"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["methods"]["sel"] == {"kind": "teacher-select", "source": "teacher-select:SeAFusion,IFCNN@tau=0.02",
                                     "members": ["SeAFusion", "IFCNN"]}
    # On this pair the selection keeps more edges than either teacher.
    q = {k: v["Qabf"] for k, v in res["overall"].items()}
    assert q["sel"] > max(q["SeAFusion"], q["IFCNN"]), q
