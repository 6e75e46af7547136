"""Distillation losses (after FusionProxy) plus an edge term and the temporal loss.

All image losses work on luminance (B, 1, H, W) in [0, 1]: the student keeps the visible chroma by
construction (BT.601), so the fused luminance is all it predicts.

- :func:`pixel_weights` / :func:`l_pix`: ``w_p = (1/(σ²_p+ε)) / Σ_q (1/(σ²_q+ε))`` per image, ``Σ_p w_p |S−ȳ|``.
- :func:`routing_weights` / :func:`l_mfm`: ``W_k = softmax_k(ṽ_k/τ)`` per cell,
  ``(1/|Ω|) Σ_k Σ_p W_k ‖Φ̃_k(S)_p − F̄_k‖²``, with ‖·‖² taken as the mean over the backbone's channels
  (so a backbone with more channels does not weigh more; a sum would scale by C_k).
- :func:`ssim` / ``L_ssim = 1 − SSIM(S, ȳ)`` (Gaussian 11×11, σ 1.5, Wang et al. 2004 constants).
- :func:`sobel_magnitude` / :func:`l_grad`: L1 between the output's Sobel magnitude and a target magnitude
  (students otherwise come out smoother than their targets; edge strength drives Qabf).
- :func:`l_temporal`: previous fused frame warped to t by a reference flow, L1 on non-occluded pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion_ros.errors import ShapeError
from fusion_ros.model.flow_consistency import consistent
from fusion_ros.model.student import backward_warp

__all__ = ["pixel_weights", "l_pix", "routing_weights", "l_mfm", "ssim", "l_ssim", "sobel_magnitude", "l_grad",
           "occlusion_mask", "l_temporal"]


def pixel_weights(var: torch.Tensor, eps: float = 1e-3, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse-variance pixel weights normalised to sum 1 per image.

    Args:
        var: (B, 1, H, W) per-pixel ensemble variance σ².
        eps: ε of the inverse (1e-3 in training).
        mask: optional (B, 1, H, W) 0/1 validity mask (weights of masked pixels are 0).

    Returns:
        (B, 1, H, W) weights, each image summing to 1.
    """
    inv = 1.0 / (var + eps)
    if mask is not None:
        inv = inv * mask
    return inv / inv.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)


def l_pix(pred: torch.Tensor, target: torch.Tensor, var: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Uncertainty-weighted L1: mean over the batch of ``Σ_p w_p |pred − target|``. Shapes (B, 1, H, W)."""
    if pred.shape != target.shape or var.shape != pred.shape:
        raise ShapeError(f"l_pix: pred {tuple(pred.shape)}, target {tuple(target.shape)}, var {tuple(var.shape)} must match")
    w = pixel_weights(var, eps)
    return (w * (pred - target).abs()).sum(dim=(1, 2, 3)).mean()


def routing_weights(norm_vars: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Per-cell softmax over backbones of the normalised feature variances.

    Args:
        norm_vars: (K, B, h, w) ṽ_k = v_k / (E_x[v̄_k] + ε).
        tau: temperature; → 0 gives one-hot on the largest ṽ, → ∞ gives uniform 1/K.

    Returns:
        (K, B, h, w) weights summing to 1 over K.
    """
    return torch.softmax(norm_vars / tau, dim=0)


def l_mfm(student_feats: list[torch.Tensor], target_feats: list[torch.Tensor], norm_vars: list[torch.Tensor],
          tau: float = 1.0, margin: int = 0) -> torch.Tensor:
    """Routed multi-backbone alignment loss.

    Args:
        student_feats: per backbone (B, C_k, h, w), Φ̃_k(S(x)) (already divided by σ̂_k).
        target_feats: per backbone (B, C_k, h, w), F̄_k(x).
        norm_vars: per backbone (B, h, w), ṽ_k.
        tau: routing temperature.
        margin: cells dropped at each border (crop-border padding makes them differ from the full-image cache).

    Returns:
        Scalar ``(1/|Ω|) Σ_k Σ_p W_k(p) · mean_c (Φ̃_k(S)_p − F̄_k(p))²``.
    """
    if not student_feats:
        return torch.zeros(())
    w = routing_weights(torch.stack(norm_vars), tau)                       # (K, B, h, w)
    total = 0.0
    for k, (s, t) in enumerate(zip(student_feats, target_feats)):
        if s.shape != t.shape:
            raise ShapeError(f"l_mfm: backbone {k} student features {tuple(s.shape)} vs target {tuple(t.shape)}")
        err = ((s - t) ** 2).mean(1)                                        # (B, h, w)
        total = total + w[k] * err
    if margin > 0 and total.shape[-1] > 2 * margin and total.shape[-2] > 2 * margin:
        total = total[..., margin:-margin, margin:-margin]
    return total.mean()


def _gauss_window(size: int = 11, sigma: float = 1.5, device=None, dtype=None) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of (B, C, H, W) images (Gaussian window, 'valid' region). Returns a scalar tensor."""
    if x.shape != y.shape:
        raise ShapeError(f"ssim: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
    c = x.shape[1]
    g = _gauss_window(window, sigma, x.device, x.dtype)
    gx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    gy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gx, groups=c), gy, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def l_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM(pred, target)``."""
    return 1.0 - ssim(pred, target)


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``|∂x| + |∂y|`` by Sobel (kernel /4: a unit step gives 1), replicate-padded. (B, 1, H, W) -> same."""
    kx = _SOBEL_X.to(x.device, x.dtype).view(1, 1, 3, 3)
    ky = kx.transpose(-1, -2)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, kx).abs() + F.conv2d(xp, ky).abs()


def l_grad(pred: torch.Tensor, grad_target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between ``sobel_magnitude(pred)`` and a target magnitude map (B, 1, H, W)."""
    return (sobel_magnitude(pred) - grad_target).abs().mean()


def occlusion_mask(flow_tb: torch.Tensor, flow_bt: torch.Tensor) -> torch.Tensor:
    """1 where ``flow_tb`` is trusted by :func:`fusion_ros.model.flow_consistency.consistent`.

    Args:
        flow_tb: (B, 2, H, W) flow from frame t to t−1 (for each pixel of t, its displacement into t−1).
        flow_bt: (B, 2, H, W) flow from t−1 to t.

    Returns:
        (B, 1, H, W) float mask; also 0 where ``x + flow_tb`` leaves the image.
    """
    back = backward_warp(flow_bt, flow_tb)
    ok = consistent(((flow_tb + back) ** 2).sum(1, keepdim=True), (flow_tb ** 2).sum(1, keepdim=True),
                    (back ** 2).sum(1, keepdim=True))
    _, _, h, w = flow_tb.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow_tb.device, dtype=flow_tb.dtype),
                            torch.arange(w, device=flow_tb.device, dtype=flow_tb.dtype), indexing="ij")
    tx, ty = xs + flow_tb[:, 0:1], ys + flow_tb[:, 1:2]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (ok & inside).to(flow_tb.dtype)


def l_temporal(cur: torch.Tensor, prev: torch.Tensor, flow_tb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |cur − warp(prev, flow_tb)| over the pixels where ``mask`` is 1. cur/prev (B, C, H, W)."""
    warped = backward_warp(prev, flow_tb)
    return ((cur - warped).abs() * mask).sum() / (mask.sum() * cur.shape[1]).clamp_min(1.0)
