"""Input-side augmentation: thermal misalignment injection (as in FusionProxy) and degradations (as in MMAIF).

Only the student's inputs change; the targets stay the clean, aligned teacher statistics. Everything
works on batches of float tensors in [0, 1] and draws from a ``torch.Generator`` (reproducible).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fusion_ros.train.config import TrainConfig

__all__ = ["affine_matrices", "apply_affine", "misalign", "degrade_visible", "degrade_thermal", "gaussian_blur"]


def affine_matrices(n: int, max_px: float, max_deg: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample ``n`` rotations (deg) and translations (px) uniformly in ±max.

    Returns:
        angles (n,) degrees, tx (n,) px, ty (n,) px.
    """
    u = torch.rand(3, n, generator=gen) * 2 - 1
    return u[0] * max_deg, u[1] * max_px, u[2] * max_px


def apply_affine(img: torch.Tensor, angle_deg: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Rotate about the centre by ``angle_deg`` and move content by (+tx, +ty) px.

    Args:
        img: (B, C, H, W).
        angle_deg, tx, ty: (B,) each.

    Returns:
        (B, C, H, W), border-replicated: content at (x, y) moves to R(x − c) + c + t.
    """
    b, _, h, w = img.shape
    a = angle_deg * math.pi / 180.0
    cos, sin = torch.cos(a), torch.sin(a)
    # Output pixel p samples the input at R^-1 (p - c - t) + c; expressed in align_corners=False
    # normalised coordinates (x_n = (2x + 1)/W - 1), pixel offsets scale by 2/W and 2/H.
    sx, sy = w / 2.0, h / 2.0
    theta = torch.zeros(b, 2, 3, dtype=img.dtype, device=img.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = sin * sy / sx
    theta[:, 1, 0] = -sin * sx / sy
    theta[:, 1, 1] = cos
    # Inverse translation: -R^-1 t, in normalised units.
    tnx, tny = tx / sx, ty / sy
    theta[:, 0, 2] = -(cos * tnx + sin * sy / sx * tny)
    theta[:, 1, 2] = -(-sin * sx / sy * tnx + cos * tny)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def misalign(thermal: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random affine on the thermal input with probability ``cfg.misalign_prob`` per sample."""
    b = thermal.shape[0]
    if cfg.misalign_prob <= 0 or (cfg.misalign_px == 0 and cfg.misalign_deg == 0):
        return thermal
    ang, tx, ty = affine_matrices(b, cfg.misalign_px, cfg.misalign_deg, gen)
    on = (torch.rand(b, generator=gen) < cfg.misalign_prob).to(thermal.dtype)
    return apply_affine(thermal, ang * on, tx * on, ty * on)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), reflect-padded; sigma in px."""
    if sigma <= 0.1:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    g = g[g.numel() // 2 - r: g.numel() // 2 + r + 1]
    g = g / g.sum()
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _u(gen: torch.Generator) -> float:
    return float(torch.rand((), generator=gen))


def degrade_visible(vis: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Noise, blur, low light, haze/fog, glare and rain on the visible input, each with its probability.

    Args:
        vis: (B, 3, H, W) RGB in [0, 1] (not modified).

    Returns:
        Degraded copy, clamped to [0, 1].
    """
    out = []
    for img in vis:
        x = img[None]
        h, w = x.shape[-2:]
        if _u(gen) < cfg.p_lowlight:
            gain = cfg.s_lowlight + (1 - cfg.s_lowlight) * _u(gen)
            x = x.clamp_min(0) ** (1.0 + 0.8 * _u(gen)) * gain
        if _u(gen) < cfg.p_haze:
            t = 1.0 - cfg.s_haze * _u(gen)
            airlight = 0.7 + 0.3 * _u(gen)
            x = x * t + airlight * (1 - t)
        if _u(gen) < cfg.p_glare:
            cy, cx = _u(gen) * h, _u(gen) * w
            rad = (0.1 + 0.3 * _u(gen)) * max(h, w)
            ys = torch.arange(h, dtype=x.dtype).view(-1, 1)
            xs = torch.arange(w, dtype=x.dtype).view(1, -1)
            blob = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * rad ** 2))
            x = x + cfg.s_glare * _u(gen) * blob
        if _u(gen) < cfg.p_rain:
            drops = (torch.rand(1, 1, h, w, generator=gen) < cfg.s_rain).to(x.dtype)
            length = 5 + int(10 * _u(gen))
            k = torch.zeros(1, 1, length, 3, dtype=x.dtype)
            k[..., 1] = 1.0
            streaks = F.conv2d(drops, k, padding=(length // 2, 1))[..., :h, :w].clamp(0, 1)
            x = x * (1 - 0.5 * streaks) + 0.5 * streaks * 0.9
        if _u(gen) < cfg.p_blur:
            x = gaussian_blur(x, 0.5 + (cfg.s_blur - 0.5) * _u(gen))
        if _u(gen) < cfg.p_noise:
            x = x + torch.randn(x.shape, generator=gen) * cfg.s_noise * _u(gen)
        out.append(x.clamp(0, 1))
    return torch.cat(out)


def degrade_thermal(th: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Blur and column-stripe / fixed-pattern noise on the thermal input (B, 1, H, W)."""
    out = []
    for img in th:
        x = img[None]
        if _u(gen) < cfg.p_tblur:
            x = gaussian_blur(x, 0.5 + (cfg.s_tblur - 0.5) * _u(gen))
        if _u(gen) < cfg.p_stripe:
            amp = cfg.s_stripe * (0.3 + 0.7 * _u(gen))
            cols = torch.randn(1, 1, 1, x.shape[-1], generator=gen) * amp
            fpn = torch.randn(x.shape, generator=gen) * amp * 0.3
            x = x + cols + fpn
        out.append(x.clamp(0, 1))
    return torch.cat(out)
