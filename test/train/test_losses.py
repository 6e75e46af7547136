"""Hand-computable checks of the distillation losses, the routing and the misalignment injection."""

from __future__ import annotations

import math

import pytest
import torch

from fusion_ros.train import losses as L
from fusion_ros.train.augment import apply_affine, misalign
from fusion_ros.train.config import TrainConfig


def test_pixel_weights_sum_to_one_and_favour_low_variance():
    var = torch.tensor([[0.0, 0.001], [0.009, 0.099]]).view(1, 1, 2, 2)
    w = L.pixel_weights(var, eps=1e-3)
    inv = torch.tensor([1000.0, 500.0, 100.0, 10.0])
    assert torch.allclose(w.flatten(), inv / inv.sum(), atol=1e-6)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert w.flatten()[0] > w.flatten()[1] > w.flatten()[2] > w.flatten()[3]


def test_l_pix_is_weighted_mean_abs_error():
    var = torch.tensor([[0.0, 0.001]]).view(1, 1, 1, 2)
    pred = torch.tensor([[0.5, 0.5]]).view(1, 1, 1, 2)
    tgt = torch.tensor([[0.2, 0.8]]).view(1, 1, 1, 2)
    # weights 1000/1500 and 500/1500, errors 0.3 and 0.3 -> 0.3; make the errors differ
    tgt2 = torch.tensor([[0.4, 0.8]]).view(1, 1, 1, 2)
    assert float(L.l_pix(pred, tgt, var)) == pytest.approx(0.3, abs=1e-6)
    assert float(L.l_pix(pred, tgt2, var)) == pytest.approx(2 / 3 * 0.1 + 1 / 3 * 0.3, abs=1e-6)


def test_routing_is_softmax_and_limits():
    v = torch.tensor([0.5, 2.0, 1.0]).view(3, 1, 1, 1)
    w = L.routing_weights(v, tau=1.0).flatten()
    e = torch.exp(torch.tensor([0.5, 2.0, 1.0]))
    assert torch.allclose(w, e / e.sum(), atol=1e-6)
    cold = L.routing_weights(v, tau=1e-3).flatten()
    assert torch.allclose(cold, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    hot = L.routing_weights(v, tau=1e6).flatten()
    assert torch.allclose(hot, torch.full((3,), 1 / 3), atol=1e-5)


class _Fixed(torch.nn.Module):
    """A fixed 'backbone': 8x8 average pooling times a constant (hand-computable features)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 8) * self.scale


def test_l_mfm_routes_per_cell_with_fixed_modules():
    # Two 1-channel backbones on a 16x8 image -> a 2x1 grid. Student image: 0.5 everywhere; target features 0.
    img = torch.full((1, 1, 16, 8), 0.5)
    panel = [_Fixed(1.0), _Fixed(2.0)]
    sf = [m(img) for m in panel]                         # 0.5 and 1.0 in both cells
    tf = [torch.zeros_like(f) for f in sf]
    # Cell 0: backbone 0 much more variable -> routed to it; cell 1: equal variances -> 1/2 each.
    nv = [torch.tensor([[[50.0], [1.0]]]), torch.tensor([[[0.0], [1.0]]])]
    got = float(L.l_mfm(sf, tf, nv, tau=1.0))
    cell0 = 1.0 * 0.25 + 0.0 * 1.0                        # softmax(50, 0) ~ (1, 0)
    cell1 = 0.5 * 0.25 + 0.5 * 1.0
    assert got == pytest.approx((cell0 + cell1) / 2, abs=1e-6)
    # tau -> inf: uniform over the two backbones in every cell.
    assert float(L.l_mfm(sf, tf, nv, tau=1e9)) == pytest.approx(0.5 * 0.25 + 0.5 * 1.0, abs=1e-6)


def test_ssim_of_image_with_itself_is_one_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 40, 40, generator=g)
    assert float(L.ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(L.l_ssim(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.ssim(x, (x + 0.3 * torch.rand(x.shape, generator=g)).clamp(0, 1))) < 0.95


def test_sobel_magnitude_of_a_unit_step_is_one():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0
    m = L.sobel_magnitude(x)
    assert float(m[0, 0, 4, 3]) == pytest.approx(1.0) and float(m[0, 0, 4, 4]) == pytest.approx(1.0)
    assert float(m[0, 0, 4, 1]) == 0.0
    assert float(L.l_grad(x, m)) == 0.0


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    h, w = img.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    s = img.sum()
    return float((img * xs).sum() / s), float((img * ys).sum() / s)


def test_affine_injection_moves_content_by_the_sampled_amount():
    img = torch.zeros(1, 1, 64, 80)
    img[..., 20:26, 30:36] = 1.0                          # blob centred at (32.5, 22.5)
    cx, cy = _centroid(img)
    moved = apply_affine(img, torch.tensor([0.0]), torch.tensor([7.0]), torch.tensor([-4.0]))
    mx, my = _centroid(moved)
    assert (mx - cx, my - cy) == pytest.approx((7.0, -4.0), abs=0.05)
    # A rotation by 2 deg about the centre (39.5, 31.5): the blob rotates with it.
    rot = apply_affine(img, torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    a = math.radians(2.0)
    dx, dy = cx - 39.5, cy - 31.5
    ex, ey = 39.5 + math.cos(a) * dx - math.sin(a) * dy, 31.5 + math.sin(a) * dx + math.cos(a) * dy
    assert _centroid(rot) == pytest.approx((ex, ey), abs=0.05)


def test_misalign_stays_within_bounds_and_probability_zero_is_identity():
    img = torch.zeros(16, 1, 64, 64)
    img[..., 28:36, 28:36] = 1.0
    cfg = TrainConfig(misalign_prob=1.0, misalign_px=10.0, misalign_deg=0.0)
    out = misalign(img, cfg, torch.Generator().manual_seed(3))
    shifts = [(_centroid(o)[0] - 31.5, _centroid(o)[1] - 31.5) for o in out]
    assert all(abs(sx) <= 10.05 and abs(sy) <= 10.05 for sx, sy in shifts)
    assert max(abs(s) for xy in shifts for s in xy) > 3.0
    same = misalign(img, TrainConfig(misalign_prob=0.0), torch.Generator().manual_seed(3))
    assert torch.equal(same, img)


def test_temporal_loss_is_zero_for_content_moved_by_the_flow():
    g = torch.Generator().manual_seed(1)
    prev = torch.rand(1, 1, 32, 32, generator=g)
    cur = torch.roll(prev, shifts=2, dims=-1)            # content moved right by 2 px
    flow_tb = torch.zeros(1, 2, 32, 32)
    flow_tb[:, 0] = -2.0                                  # pixel x of t was at x-2 in t-1
    flow_bt = -flow_tb
    mask = L.occlusion_mask(flow_tb, flow_bt)
    assert float(mask[..., :2].sum()) == 0.0            # pixels whose source leaves the image are masked
    assert float(L.l_temporal(cur, prev, flow_tb, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.l_temporal(cur, prev, torch.zeros_like(flow_tb), torch.ones_like(mask))) > 0.1
