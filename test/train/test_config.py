"""Training configs: the shipped YAML files load, bad values raise ConfigError naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_ros.errors import ConfigError
from fusion_ros.train.config import TrainConfig, load_train_config
from fusion_ros.train.data import split_pairs, PairRecord

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["lite", "default"])
def test_shipped_configs_load(name):
    cfg = load_train_config(REPO / "config" / "train" / f"{name}.yaml")
    assert cfg.model == name
    assert (cfg.w_pix, cfg.w_mfm, cfg.w_ssim) == (1.0, 0.5, 0.2)       # the loss weights of the recipes
    assert cfg.teacher_weight_map() == {"SeAFusion": 0.5, "IFCNN": 0.5}
    assert len(cfg.backbones) >= 2


@pytest.mark.parametrize("path", sorted((REPO / "config" / "train").glob("*_*.yaml")), ids=lambda p: p.stem)
def test_follow_up_recipes_load_and_chain(path):
    """Refinement and stage-II recipes: valid, start from weights, and stay on the shipped model's variant."""
    cfg = load_train_config(path)
    assert cfg.model in path.stem
    assert cfg.init_checkpoint, "a follow-up recipe starts from earlier weights"
    assert cfg.steps == 0 or cfg.video_steps == 0, "each follow-up runs one stage"
    if cfg.steps == 0:
        assert cfg.w_temporal > cfg.w_pix, "with equal L1 weights stage II leaves the output history off"


@pytest.mark.parametrize("override, field", [
    ({"teacher_weights": [1.0]}, "teacher_weights"),
    ({"teacher_weights": [-1.0, 2.0]}, "teacher_weights"),
    ({"crop": 100}, "crop"),
    ({"tau": 0.0}, "tau"),
    ({"p_noise": 1.5}, "p_noise"),
    ({"backbones": ["vgg_from_the_hub"]}, "vgg_from_the_hub"),
    ({"grad_target": "sobel"}, "grad_target"),
    ({"model": "huge"}, "model"),
    ({"norm": "group"}, "norm"),
    ({"dataset_repeats": ["llvip"]}, "dataset_repeats"),
    ({"dataset_repeats": ["llvip:0"]}, "dataset_repeats"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        load_train_config(None, override)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="teacher_weights"):
        load_train_config(None, {"teacher_weight": [1, 1]})


def test_zero_weight_teacher_is_dropped_and_weights_normalised():
    cfg = TrainConfig(teachers=("SeAFusion", "IFCNN", "TarDAL"), teacher_weights=(3.0, 1.0, 0.0))
    assert cfg.teacher_weight_map() == {"SeAFusion": 0.75, "IFCNN": 0.25}


def test_split_is_deterministic_and_disjoint():
    recs = [PairRecord("d", f"{i:04d}", Path(f"ir/{i}"), Path(f"vi/{i}")) for i in range(200)]
    tr1, va1 = split_pairs(recs, 0.1)
    tr2, va2 = split_pairs(list(reversed(recs)), 0.1)
    assert {r.key for r in va1} == {r.key for r in va2}
    assert not {r.key for r in tr1} & {r.key for r in va1}
    assert 8 <= len(va1) <= 35


def test_norm_starts_a_batch_norm_student_from_a_layer_norm_checkpoint():
    import torch

    from fusion_ros.train.run import build_student

    layer_norm_lite = REPO / "models" / "candidates" / "fusion_lite_ln.pt"
    model = build_student(TrainConfig(init_checkpoint=str(layer_norm_lite), norm="batch"))
    assert model.cfg.norm == "batch" and model.training
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    same = build_student(TrainConfig(init_checkpoint=str(layer_norm_lite)))
    assert same.cfg.norm == "layer"
    assert build_student(TrainConfig(init_checkpoint=str(REPO / "models" / "fusion_lite.pt"))).cfg.norm == "batch"
    assert build_student(TrainConfig(norm="batch")).cfg.norm == "batch"


def test_dataset_repeats_list_training_pairs_of_a_dataset_more_often():
    from types import SimpleNamespace

    from fusion_ros.train.stage_images import repeat_datasets

    cfg = load_train_config(None, {"dataset_repeats": ["llvip:3"]})
    items = [SimpleNamespace(key=k) for k in ("roadscene/a", "llvip/b", "roadscene/c")]
    repeated = repeat_datasets(items, cfg.repeat_map())
    assert [it.key for it in repeated] == ["roadscene/a", "llvip/b", "llvip/b", "llvip/b", "roadscene/c"]
    assert repeated[1] is repeated[2]                          # the same pair, not a copy
    assert repeat_datasets(items, TrainConfig().repeat_map()) == items
