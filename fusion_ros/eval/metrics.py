"""Reference-free image fusion metrics, from their textbook definitions.

Every metric works on single-channel float images in the uint8 range [0, 255] (BT.601 luma for colour
images, see :func:`to_gray`). The definitions follow the formulas used by the fusion literature's
evaluation code (VIF-Benchmark / MATLAB toolboxes), so the numbers are comparable with published tables:

* EN   Shannon entropy of the 256-bin histogram, bits (Roberts et al. 2008).
* SD   standard deviation (population), grey levels.
* SF   spatial frequency sqrt(RF^2 + CF^2) with RF/CF the RMS of horizontal/vertical first differences.
* AG   average gradient mean(sqrt((gx^2 + gy^2) / 2)) with central differences (MATLAB ``gradient``).
* MI   mutual information MI(F, A) + MI(F, B) of 256-bin joint histograms, **bits** (so MI(X, X) == EN(X)).
  The CDDFuse Python evaluator reports nats (sklearn); multiply ours by ln 2 to compare with it.
* SCD  sum of the correlations of differences corr(F - B, A) + corr(F - A, B) (Aslantas & Bendes 2015).
* VIF  multi-scale pixel-domain visual information fidelity (Sheikh & Bovik 2006, "VIFF" in fusion papers):
  VIF(A -> F) + VIF(B -> F), 4 scales, Gaussian windows 17/9/5/3, sigma_n^2 = 2.
* Qabf Xydeas-Petrovic edge preservation with Sobel gradients and the standard constants
  (Tg=0.9994, kg=-15, Dg=0.5, Ta=0.9879, ka=-22, Da=0.8, L=1). With these constants a perfectly kept
  edge scores Qg(1) * Qa(1) = 0.9748, not 1 (see :data:`QABF_PERFECT`).
* SSIM mean of SSIM(F, A) and SSIM(F, B) (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
  K1=0.01, K2=0.03, L=255, mean over the valid region).

The metrics reward closeness to a source: copying the visible or the thermal image scores high MI, VIF
and SSIM. Tables should therefore always carry the sources themselves as baseline rows.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import cv2
import numpy as np

from fusion_ros.errors import ShapeError

__all__ = [
    "METRICS", "NO_REF_METRICS", "PAIR_METRICS", "QABF_PERFECT", "to_gray", "compute_all",
    "entropy", "std_dev", "spatial_frequency", "average_gradient", "mutual_information", "mi",
    "scd", "vif_single", "vif", "qabf", "ssim_single", "ssim", "compute_many",
]

log = logging.getLogger(__name__)

# Column order of every table.
METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
NO_REF_METRICS = ("EN", "SD", "SF", "AG")
PAIR_METRICS = ("MI", "SCD", "VIF", "Qabf", "SSIM")

_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8
# The score of a pixel whose edge strength and orientation are kept exactly (G = A = 1).
QABF_PERFECT = _TG / (1.0 + math.exp(_KG * (1.0 - _DG))) * _TA / (1.0 + math.exp(_KA * (1.0 - _DA)))


def to_gray(img: np.ndarray) -> np.ndarray:
    """Bring an image to the grey scale every metric works on.

    Args:
        img: (H, W) grey or (H, W, 3) RGB image, uint8, or float in the uint8 range.

    Returns:
        (H, W) float64 in [0, 255]. RGB becomes BT.601 luma rounded to integer levels (what
        ``cv2.cvtColor(..., COLOR_RGB2GRAY)`` gives), so that histograms see the 256 levels.

    Raises:
        ShapeError: for any other shape.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 3:
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a.astype(np.float64)), 0, 255).astype(np.uint8)
        a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    if a.ndim != 2:
        raise ShapeError(f"expected an (H, W) or (H, W, 3) image, got shape {a.shape}")
    return a.astype(np.float64)


def _check(*imgs: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(i, dtype=np.float64) for i in imgs]
    for i in out:
        if i.ndim != 2:
            raise ShapeError(f"metrics take (H, W) grey images, got shape {i.shape}; convert with to_gray()")
    if any(i.shape != out[0].shape for i in out):
        raise ShapeError(f"images must share one size, got {[i.shape for i in out]}")
    return out


def _levels(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.int64)


def entropy(img: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-level histogram of an (H, W) image."""
    (img,) = _check(img)
    p = np.bincount(_levels(img).ravel(), minlength=256) / img.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0


def std_dev(img: np.ndarray) -> float:
    """SD: population standard deviation of an (H, W) image, grey levels."""
    (img,) = _check(img)
    return float(img.std())


def spatial_frequency(img: np.ndarray) -> float:
    """SF: sqrt(RF^2 + CF^2), RF/CF = RMS of the horizontal/vertical first differences of (H, W) image."""
    (img,) = _check(img)
    rf2 = np.mean(np.diff(img, axis=1) ** 2) if img.shape[1] > 1 else 0.0
    cf2 = np.mean(np.diff(img, axis=0) ** 2) if img.shape[0] > 1 else 0.0
    return float(math.sqrt(rf2 + cf2))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean of sqrt((gx^2 + gy^2) / 2), central differences (one-sided at the border), (H, W) image."""
    (img,) = _check(img)
    if min(img.shape) < 2:
        return 0.0
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2.0)))


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI(A, B) in bits from the 256x256 joint histogram of two (H, W) images (symmetric, MI(X, X) = EN(X))."""
    a, b = _check(a, b)
    joint = np.bincount((_levels(a) * 256 + _levels(b)).ravel(), minlength=65536).reshape(256, 256)
    pab = joint / a.size
    pa = pab.sum(axis=1, keepdims=True)
    pb = pab.sum(axis=0, keepdims=True)
    nz = pab > 0
    return float((pab[nz] * np.log2(pab[nz] / (pa @ pb)[nz])).sum()) + 0.0


def mi(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """MI of the fusion: MI(F, A) + MI(F, B), bits."""
    return mutual_information(f, a) + mutual_information(f, b)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xc * xc).sum()) * float((yc * yc).sum()))
    # A constant difference image carries no correlation (0/0): count it as 0, not NaN.
    return float((xc * yc).sum() / den) if den > 0 else 0.0


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD: corr(F - B, A) + corr(F - A, B) of (H, W) images; 2 for F = A + B, range [-2, 2]."""
    f, a, b = _check(f, a, b)
    return _corr(f - b, a) + _corr(f - a, b)


def _gauss_win(n: int) -> np.ndarray:
    # MATLAB fspecial('gaussian', n, n / 5) incl. its truncation of tiny taps.
    sd = n / 5.0
    r = (n - 1) / 2.0
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sd * sd))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


_VIF_WINDOWS = tuple(_gauss_win(2 ** (5 - s) + 1) for s in range(1, 5))


def _filt_valid(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    # The window is symmetric, so correlation (filter2D) equals MATLAB's convolution; crop to 'valid'.
    r = win.shape[0] // 2
    out = cv2.filter2D(img, cv2.CV_64F, win, borderType=cv2.BORDER_CONSTANT)
    return out[r:img.shape[0] - r, r:img.shape[1] - r]


def _vif_pyramid(img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per VIF scale: (image at that scale, local mean, local variance clipped at 0)."""
    out = []
    x = img
    for scale, win in enumerate(_VIF_WINDOWS, start=1):
        if scale > 1:
            x = _filt_valid(x, win)[::2, ::2]
        if min(x.shape) < win.shape[0]:
            break
        mu = _filt_valid(x, win)
        out.append((x, mu, np.maximum(_filt_valid(x * x, win) - mu * mu, 0)))
    return out


def _vif_from(ref_pyr: list, dist_pyr: list, sigma_nsq: float = 2.0) -> float:
    eps = 1e-10
    num = den = 0.0
    for (ref, mu1, s1), (dist, mu2, s2), win in zip(ref_pyr, dist_pyr, _VIF_WINDOWS):
        s12 = _filt_valid(ref * dist, win) - mu1 * mu2
        s1 = s1.copy()
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat1 = s1 < eps
        g[flat1] = 0
        sv[flat1] = s2[flat1]
        s1[flat1] = 0
        flat2 = s2 < eps
        g[flat2] = 0
        sv[flat2] = 0
        neg = g < 0
        sv[neg] = s2[neg]
        g[neg] = 0
        sv = np.maximum(sv, eps)
        num += float(np.log10(1 + g * g * s1 / (sv + sigma_nsq)).sum())
        den += float(np.log10(1 + s1 / sigma_nsq).sum())
    if den <= 0:
        return 1.0
    return num / den


def vif_single(ref: np.ndarray, dist: np.ndarray, sigma_nsq: float = 2.0) -> float:
    """Multi-scale pixel-domain VIF of ``dist`` given reference ``ref`` ((H, W) each); 1 for dist == ref.

    Four scales (Gaussian windows 17, 9, 5, 3 px, each scale filtered and subsampled by 2), the
    Gaussian scalar mixture channel model g * ref + v with HVS noise variance ``sigma_nsq``.
    Images smaller than the 17x17 window give 1.0 by the usual convention for an undefined ratio.
    """
    ref, dist = _check(ref, dist)
    return _vif_from(_vif_pyramid(ref), _vif_pyramid(dist), sigma_nsq)


def vif(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF of the fusion: VIF(A -> F) + VIF(B -> F) (VIF-Benchmark convention; 2 for F = A = B)."""
    return vif_single(a, f) + vif_single(b, f)


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Zero padding like MATLAB conv2(..., 'same') in the reference implementations.
    sx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)
    sy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)
    g = np.sqrt(sx * sx + sy * sy)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(sx == 0, math.pi / 2, np.arctan(sy / np.where(sx == 0, 1.0, sx)))
    return g, alpha


def _edge_preservation(g_a: np.ndarray, a_a: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    hi = np.maximum(g_a, g_f)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_g = np.where(hi > 0, np.minimum(g_a, g_f) / np.where(hi > 0, hi, 1.0), 0.0)
    rel_a = 1.0 - np.abs(a_a - a_f) / (math.pi / 2)
    q_g = _TG / (1.0 + np.exp(_KG * (rel_g - _DG)))
    q_a = _TA / (1.0 + np.exp(_KA * (rel_a - _DA)))
    return q_g * q_a


def _qabf_from(sa: tuple, sb: tuple, sf: tuple) -> float:
    (g_a, al_a), (g_b, al_b), (g_f, al_f) = sa, sb, sf
    den = float((g_a + g_b).sum())
    if den <= 0:
        return 0.0
    num = float((_edge_preservation(g_a, al_a, g_f, al_f) * g_a + _edge_preservation(g_b, al_b, g_f, al_f) * g_b).sum())
    return num / den


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf (Xydeas-Petrovic): edge information of A and B kept in F, weighted by source edge strength (L=1).

    Range [0, ~0.975]; 0 when neither source has an edge.
    """
    f, a, b = _check(f, a, b)
    return _qabf_from(_sobel(a), _sobel(b), _sobel(f))


_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _ssim_blur(z: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_CONSTANT)[5:-5, 5:-5]


def _ssim_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if min(x.shape) < 11:
        raise ShapeError(f"SSIM needs images of at least 11x11 pixels, got {x.shape}")
    mx = _ssim_blur(x)
    return x, mx, _ssim_blur(x * x) - mx * mx


def _ssim_from(sx: tuple, sy: tuple) -> float:
    (x, mx, sxx), (y, my, syy) = sx, sy
    sxy = _ssim_blur(x * y) - mx * my
    s = ((2 * mx * my + _SSIM_C1) * (2 * sxy + _SSIM_C2)) / ((mx * mx + my * my + _SSIM_C1) * (sxx + syy + _SSIM_C2))
    return float(s.mean())


def ssim_single(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two (H, W) images in [0, 255]: 11x11 Gaussian sigma 1.5, valid region mean."""
    x, y = _check(x, y)
    return _ssim_from(_ssim_stats(x), _ssim_stats(y))


def ssim(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the fusion: (SSIM(F, A) + SSIM(F, B)) / 2."""
    return 0.5 * (ssim_single(f, a) + ssim_single(f, b))


_FUNCS: dict[str, Callable[..., float]] = {
    "EN": entropy, "SD": std_dev, "SF": spatial_frequency, "AG": average_gradient,
    "MI": mi, "SCD": scd, "VIF": vif, "Qabf": qabf, "SSIM": ssim,
}


def compute_all(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray,
                metrics: tuple[str, ...] = METRICS) -> dict[str, float]:
    """Every metric of one fused image against its two sources.

    Args:
        fused: (H, W) or (H, W, 3) RGB fused image (uint8 or uint8-range float).
        ir: (H, W) or (H, W, 3) thermal image.
        vis: (H, W) or (H, W, 3) RGB visible image.
        metrics: names to compute, a subset of :data:`METRICS`.

    Returns:
        {name: value} in the order of ``metrics``.

    Raises:
        ShapeError: when the sizes differ.
        KeyError: for an unknown metric name.
    """
    f, a, b = to_gray(fused), to_gray(ir), to_gray(vis)
    out = {}
    for name in metrics:
        fn = _FUNCS[name]
        out[name] = fn(f) if name in NO_REF_METRICS else fn(f, a, b)
    return out


class _Prepared:
    """An image with its per-metric intermediate results computed once, on demand."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self._cache: dict[str, object] = {}

    def get(self, what: str):
        if what not in self._cache:
            fn = {"vif": _vif_pyramid, "ssim": _ssim_stats, "sobel": _sobel}[what]
            self._cache[what] = fn(self.img)
        return self._cache[what]


def compute_many(outputs: dict[str, np.ndarray], ir: np.ndarray, vis: np.ndarray,
                 metrics: tuple[str, ...] = METRICS) -> dict[str, dict[str, float]]:
    """Every metric of several fused images of the same pair, sharing the work on the sources.

    Gives the same numbers as :func:`compute_all` per image (the sources' VIF pyramids, SSIM statistics
    and Sobel gradients are computed once instead of once per method), about twice as fast for many methods.

    Args:
        outputs: method name -> fused image, (H, W) or (H, W, 3) RGB.
        ir: (H, W) or (H, W, 3) thermal image.
        vis: (H, W) or (H, W, 3) RGB visible image.
        metrics: names to compute, a subset of :data:`METRICS`.

    Returns:
        {method: {metric: value}}.
    """
    a, b = _Prepared(to_gray(ir)), _Prepared(to_gray(vis))
    if a.img.shape != b.img.shape:
        raise ShapeError(f"IR {a.img.shape} and visible {b.img.shape} differ in size")
    res = {}
    for name, fused in outputs.items():
        f = _Prepared(to_gray(fused))
        if f.img.shape != a.img.shape:
            raise ShapeError(f"{name}: fused image {f.img.shape} differs from the sources {a.img.shape}")
        out = {}
        for m in metrics:
            if m in NO_REF_METRICS or m in ("MI", "SCD"):
                out[m] = _FUNCS[m](f.img) if m in NO_REF_METRICS else _FUNCS[m](f.img, a.img, b.img)
            elif m == "VIF":
                out[m] = _vif_from(a.get("vif"), f.get("vif")) + _vif_from(b.get("vif"), f.get("vif"))
            elif m == "SSIM":
                out[m] = 0.5 * (_ssim_from(f.get("ssim"), a.get("ssim")) + _ssim_from(f.get("ssim"), b.get("ssim")))
            elif m == "Qabf":
                out[m] = _qabf_from(a.get("sobel"), b.get("sobel"), f.get("sobel"))
            else:
                raise KeyError(f"unknown metric {m!r}; choose from {METRICS}")
        res[name] = out
    return res
