"""The student: forward signature, shapes at any size, memory semantics, configs."""

from __future__ import annotations

import inspect

import pytest
import torch

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.model import MODELS, ModelConfig, create_model
from fusion_ros.model.student import (GRN, ConvNeXtV2Block, LayerNorm2d, backward_warp, bilinear_phases, fold_for_inference,
                                      window_kernel, window_stack)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised heads hide bugs: give every parameter a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("hw", [(64, 96), (61, 83), (33, 17)])
def test_forward_shapes_any_size(name: str, hw: tuple[int, int]) -> None:
    model = _randomise(create_model(name))
    t, v = torch.rand(2, 1, *hw), torch.rand(2, 3, *hw)
    fused, mem = model(t, v, model.zero_memory(*hw, batch=2))
    assert fused.shape == (2, 3, *hw)
    assert mem.shape == model.memory_shape(*hw, batch=2)
    assert float(fused.detach().min()) >= 0.0 and float(fused.detach().max()) <= 1.0
    assert torch.isfinite(fused).all() and torch.isfinite(mem).all()


def test_forward_signature_is_fixed() -> None:
    params = list(inspect.signature(create_model("lite").forward).parameters)
    assert params == ["thermal", "visible", "memory"]


def test_initial_model_is_a_5050_blend_that_keeps_visible_chroma() -> None:
    model = create_model("lite").eval()
    t, v = torch.rand(1, 1, 32, 48), torch.rand(1, 3, 32, 48)
    fused, _ = model(t, v, model.zero_memory(32, 48))
    y_vis = 0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3]
    expect = torch.clamp(v + (0.5 * t + 0.5 * y_vis - y_vis), 0, 1)
    assert torch.allclose(fused, expect, atol=1e-6)


def test_zero_memory_means_first_frame_and_memory_changes_output() -> None:
    model = _randomise(create_model("lite"))
    hw = (48, 64)
    t, v = torch.rand(1, 1, *hw), torch.rand(1, 3, *hw)
    no_mem = _randomise(create_model("lite", use_memory=False))
    no_mem.load_state_dict({k: v_ for k, v_ in model.state_dict().items() if not k.startswith(("adapter.", "history."))})
    f0, m1 = model(t, v, model.zero_memory(*hw))
    f_img, _ = no_mem(t, v, no_mem.zero_memory(*hw))
    assert torch.allclose(f0, f_img, atol=1e-6), "a zero memory must give the pure image result"
    f1, _ = model(t, v, m1)
    assert (f1 - f0).abs().max() > 1e-4, "a non-zero memory must influence the output"


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_history_damps_small_changes_and_passes_large_ones(name: str) -> None:
    # A fresh model outputs a fixed 50/50 blend whatever its features, so any frame-to-frame difference
    # between the memory and no-memory runs comes from the output history alone.
    model = create_model(name).eval()
    hw = (40, 56)
    g = torch.Generator().manual_seed(1)
    t, v = torch.rand(1, 1, *hw, generator=g), torch.rand(1, 3, *hw, generator=g)
    first, state = model(t, v, model.zero_memory(*hw))
    small = (t + 0.02 * torch.randn(1, 1, *hw, generator=g)).clamp(0, 1)
    with_mem, _ = model(small, v, state)
    without, _ = model(small, v, model.zero_memory(*hw))
    change_mem = (_luma(with_mem) - _luma(first)).abs().mean()
    change_still = (_luma(without) - _luma(first)).abs().mean()
    assert change_mem < 0.8 * change_still, (float(change_mem), float(change_still))
    large = torch.where(t < 0.5, t + 0.5, t - 0.5)   # every pixel changes by far more than the tolerance
    with_mem, _ = model(large, v, state)
    without, _ = model(large, v, model.zero_memory(*hw))
    assert (with_mem - without).abs().max() < 1e-3


def test_history_state_layout() -> None:
    cfg = create_model("default").cfg
    assert cfg.state_channels == cfg.memory_channels + 1 + cfg.stride ** 2
    assert create_model("default", history=False).cfg.state_channels == cfg.memory_channels
    assert create_model("default", use_memory=False).history is None
    model = create_model("lite").eval()
    hw = (24, 40)
    v = torch.rand(1, 3, *hw)
    fused, state = model(torch.rand(1, 1, *hw), v, model.zero_memory(*hw))
    cm, s = model.cfg.memory_channels, model.cfg.stride
    assert torch.all(state[:, cm] == 1.0), "validity channel set once a frame was fused"
    packed = torch.nn.functional.pixel_shuffle(state[:, cm + 1:], s)
    unclipped = ((fused > 0) & (fused < 1)).all(1, keepdim=True)   # RGB clipping moves the luma of the others
    assert unclipped.float().mean() > 0.3
    assert torch.allclose(packed[unclipped], _luma(fused)[unclipped], atol=1e-5), "history holds the fused luminance"


def test_adapter_disabled_passes_memory_through() -> None:
    model = _randomise(create_model("default", use_memory=False))
    mem = torch.randn(model.memory_shape(32, 32))
    _, out = model(torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32), mem)
    assert torch.equal(out, mem)


def test_memory_warp_moves_content_by_the_flow() -> None:
    mem = torch.zeros(1, 1, 8, 8)
    mem[0, 0, 4, 4] = 1.0
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = -2.0  # sample from x-2: content moves right by 2 px
    out = backward_warp(mem, flow)
    assert out[0, 0, 4, 6] == pytest.approx(1.0, abs=1e-5)
    assert out[0, 0, 4, 4] == pytest.approx(0.0, abs=1e-5)


def test_grn_and_block_keep_shape() -> None:
    x = torch.randn(2, 8, 5, 7)
    assert GRN(8)(x).shape == x.shape
    assert torch.allclose(GRN(8)(x), x)  # gamma = beta = 0 at init: identity
    assert ConvNeXtV2Block(8)(x).shape == x.shape


def test_bad_shapes_and_configs_raise_clear_errors() -> None:
    model = create_model("lite")
    with pytest.raises(ShapeError, match="thermal must be"):
        model(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), model.zero_memory(32, 32))
    with pytest.raises(ShapeError, match="memory must be"):
        model(torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32), torch.zeros(1, 16, 3, 3))
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("huge")
    with pytest.raises(ConfigError, match="did you mean 'widths'"):
        create_model("lite", widht=(8, 16))
    with pytest.raises(ConfigError, match="odd"):
        ModelConfig(attn_window=4)


def test_backward_reaches_every_trainable_parameter() -> None:
    model = _randomise(create_model("lite")).train()
    hw = (32, 48)
    f, m = model(torch.rand(1, 1, *hw), torch.rand(1, 3, *hw), torch.randn(model.memory_shape(*hw)))
    (f.mean() + m.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def _assert_same_frames(a: torch.nn.Module, b: torch.nn.Module, hw: tuple[int, int], seed: int) -> None:
    """Three frames with the memory carried: fused images and memories agree to float rounding (the export parity
    bound, << 1/255)."""
    g = torch.Generator().manual_seed(seed)
    mem_a, mem_b = a.zero_memory(*hw), b.zero_memory(*hw)
    with torch.no_grad():
        for _ in range(3):
            t, v = torch.rand(1, 1, *hw, generator=g), torch.rand(1, 3, *hw, generator=g)
            (fa, mem_a), (fb, mem_b) = a(t, v, mem_a), b(t, v, mem_b)
            assert (fa - fb).abs().max() <= 1e-4
            assert (mem_a - mem_b).abs().max() <= 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_folded_model_computes_the_same_frames(name: str) -> None:
    """fold_for_inference (what export traces) gives the model's outputs over frames with memory; the model is untouched."""
    model = _randomise(create_model(name), seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_for_inference(model)
    norms = [m for m in folded.modules() if isinstance(m, LayerNorm2d)]
    assert sum(not m.affine for m in norms) >= len(norms) - 2, "every norm but the stems' is folded"
    assert all(not m.shift for m in folded.modules() if isinstance(m, GRN))
    assert folded.blend_offset == 0.0 and model.blend_offset == 0.5
    _assert_same_frames(model, folded, (61, 83), seed=4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(folded.coeff.bias, model.coeff.bias)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_phase_upsampling_is_bilinear_upsampling(scale: int) -> None:
    x = torch.randn(2, 3, 7, 11)
    expect = torch.nn.functional.interpolate(x, scale_factor=float(scale), mode="bilinear", align_corners=False)
    got = torch.nn.functional.pixel_shuffle(bilinear_phases(x, scale), scale)
    assert got.shape == expect.shape and (got - expect).abs().max() <= 1e-5


@pytest.mark.parametrize("name", sorted(MODELS))
def test_packed_form_computes_the_same_frames(name: str) -> None:
    """The export's form (projection before upsampling, blend and history on packed maps) changes no output."""
    model = _randomise(create_model(name), seed=8)
    folded = fold_for_inference(model, packed=True)
    assert folded.packed and not model.packed
    _assert_same_frames(model, folded, (45, 70), seed=9)


@pytest.mark.parametrize("window", [3, 5])
def test_window_stack_lists_each_neighbour_zero_outside(window: int) -> None:
    x = torch.randn(2, 3, 6, 7)
    r = window // 2
    padded = torch.nn.functional.pad(x, (r, r, r, r))
    expect = torch.stack([padded[:, :, dy:dy + 6, dx:dx + 7] for dy in range(window) for dx in range(window)], 2)
    assert torch.equal(window_stack(x, window_kernel(3, window)), expect)


def _with_batch_statistics(model: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batch_norm_folds_away_with_the_same_frames(name: str) -> None:
    model = _with_batch_statistics(_randomise(create_model(name, norm="batch"), seed=6))
    folded = fold_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()), "every BatchNorm is folded away"
    _assert_same_frames(model, folded, (45, 70), seed=7)


def test_frozen_batch_norms_keep_their_statistics_in_training_mode() -> None:
    model = create_model("lite", norm="batch")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("adapter.", "history.")))   # what stage II trains
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.adapter.training
    before = [m.running_mean.clone() for m in norms]
    model(torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32), model.zero_memory(32, 32, 2))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    assert all(m.training for m in norms)


def test_convert_norm_keeps_every_other_weight() -> None:
    from fusion_ros.model.student import convert_norm

    model = _randomise(create_model("lite"), seed=8)
    converted = convert_norm(model, "batch")
    assert converted.cfg.norm == "batch" and model.cfg.norm == "layer"
    old, new = model.state_dict(), converted.state_dict()
    assert torch.equal(new["enc_vis.stages.0.0.norm.weight"], old["enc_vis.stages.0.0.norm.weight"].view(-1))
    assert all(torch.equal(new[k], v) for k, v in old.items() if "norm" not in k and k in new and "stem.1" not in k
               and "downs" not in k)
    with pytest.raises(ConfigError, match="norm"):
        create_model("lite", norm="group")
