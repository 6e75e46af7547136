"""Per-region teacher selection: a distillation target that keeps, region by region, the teacher that best keeps
the sources' local structure.

The equal mean of the teachers is pulled towards the weaker teacher wherever the teachers differ, so a student
of the mean cannot beat the best teacher there. The selection target instead scores every teacher output ``y_n``
per pixel by how much of the sources' local structure it keeps, and blends the teachers with a softmax of those
scores at temperature ``tau`` (``tau = 0``: the best teacher per pixel):

    a_n(x) = w_n exp(s_n(x) / tau) / Σ_m w_m exp(s_m(x) / tau)        (w_n: the configured teacher weights)

Structure measures ``s_n`` (each averaged over a ``window`` x ``window`` box):

* ``edge``: the Xydeas-Petrovic edge-preservation map of the thermal T and the visible luma V in ``y_n``
  (Sobel strength and orientation, the Qabf constants), weighted by the source edge strengths, i.e. a local Qabf;
* ``ssim``: Piella's weighted SSIM: λ SSIM(y_n, T) + (1 − λ) SSIM(y_n, V) with λ = σ²_T / (σ²_T + σ²_V), the local
  source variances over the window;
* ``vif``: the share of the sources' information that ``y_n`` keeps under the pixel-domain VIF model at one scale
  (Sheikh & Bovik: y = g·s + noise, kept log2(1 + g²σ²_s / (σ²_noise + σ²_n)) of log2(1 + σ²_s / σ²_n), σ²_n = 2 grey
  levels², both sources summed);
* a sum such as ``edge+vif``: the mean of those scores.

Where no source has structure (all scores equal) the weights fall back to the teacher weights, i.e. the mean.
``blend`` says how the weights are applied: ``pixel`` blends the teacher pixels, ``pyramid`` blends the Laplacian
pyramids of the teachers with the Gaussian pyramids of the weights (Burt & Adelson), so that a change of teacher
between regions of different brightness leaves no seam.

Everything here is NumPy/OpenCV and deterministic; training (the teacher cache) and ``fusion-ros eval``'s
``teacher-select`` method call the same :func:`select_target`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, ShapeError

__all__ = ["MEASURES", "BLENDS", "SelectParams", "parse_select_params", "source_lumas", "structure_scores",
           "selection_weights", "select_target", "pool_weights"]

MEASURES = ("edge", "ssim", "vif")
BLENDS = ("pixel", "pyramid")

# Qabf constants (Xydeas & Petrovic 2000), the same as fusion_ros.eval.metrics.
_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8
_SSIM_C1 = 0.01 ** 2           # images in [0, 1]
_SSIM_C2 = 0.03 ** 2


@dataclass(frozen=True)
class SelectParams:
    """Parameters of the selection target.

    Attributes:
        measure: structure measure, one of :data:`MEASURES` or several joined by ``+`` (their mean).
        window: side of the odd square window the scores are averaged over, px (>= 1).
        tau: softmax temperature over the teachers (>= 0; 0 = pick the best teacher per pixel).
        blend: how the weights are applied, one of :data:`BLENDS`.
        levels: pyramid levels of the ``pyramid`` blend (>= 1; fewer where the image is small).
    """

    measure: str = "edge+vif"
    window: int = 17
    tau: float = 0.03
    blend: str = "pyramid"
    levels: int = 9

    def __post_init__(self) -> None:
        if not all(m in MEASURES for m in self.measure.split("+")):
            raise ConfigError(f"select_measure (teacher-select measure=) is '{self.measure}'; expected one of "
                              f"{', '.join(MEASURES)} or several joined by '+', e.g. edge+vif")
        if self.window < 1 or self.window % 2 == 0:
            raise ConfigError(f"select_window (teacher-select window=) is {self.window}; it must be an odd number >= 1")
        if not (self.tau >= 0 and math.isfinite(self.tau)):
            raise ConfigError(f"select_tau (teacher-select tau=) is {self.tau}; it must be a finite number >= 0 (0 = pick the best teacher)")
        if self.blend not in BLENDS:
            raise ConfigError(f"select_blend (teacher-select blend=) is '{self.blend}'; expected one of {', '.join(BLENDS)}")
        if self.levels < 1:
            raise ConfigError(f"select_levels (teacher-select levels=) is {self.levels}; it must be >= 1")


def parse_select_params(text: str) -> SelectParams:
    """``"window=17,tau=0.03,measure=edge+vif,blend=pyramid,levels=9"`` (any subset, any order) -> :class:`SelectParams`.

    Raises:
        ConfigError: an unknown key or a value of the wrong type.
    """
    kinds = {"measure": str, "window": int, "tau": float, "blend": str, "levels": int}
    kw: dict = {}
    for item in (s for s in text.split(",") if s):
        key, sep, value = item.partition("=")
        if not sep or key not in kinds:
            raise ConfigError(f"teacher-select parameter {item!r}; expected key=value with a key among {', '.join(kinds)}")
        try:
            kw[key] = kinds[key](value)
        except ValueError:
            raise ConfigError(f"teacher-select parameter {key}={value!r} is not a {kinds[key].__name__}") from None
    return SelectParams(**kw)


def source_lumas(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thermal and visible luma in [0, 1] (float32) from 8-bit sources.

    Args:
        ir: (H, W) or (H, W, 3) uint8 thermal image (3 channels: their mean).
        vis: (H, W) grey or (H, W, 3) RGB uint8 visible image (BT.601 luma).
    """
    t = ir.astype(np.float32)
    t = t.mean(2) if t.ndim == 3 else t
    v = vis.astype(np.float32)
    v = 0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2] if v.ndim == 3 else v
    return t / 255.0, v / 255.0


def _box(x: np.ndarray, window: int) -> np.ndarray:
    return cv2.blur(x, (window, window), borderType=cv2.BORDER_REFLECT) if window > 1 else x


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    sy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    g = np.sqrt(sx * sx + sy * sy)
    safe = np.where(sx == 0, np.float32(1.0), sx)
    alpha = np.where(sx == 0, np.float32(math.pi / 2), np.arctan(sy / safe)).astype(np.float32)
    return g, alpha


def _edge_kept(src: tuple[np.ndarray, np.ndarray], fused: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (g_s, a_s), (g_f, a_f) = src, fused
    hi = np.maximum(g_s, g_f)
    rel_g = np.where(hi > 0, np.minimum(g_s, g_f) / np.where(hi > 0, hi, 1.0), 0.0)
    rel_a = 1.0 - np.abs(a_s - a_f) / (math.pi / 2)
    return (_TG / (1.0 + np.exp(_KG * (rel_g - _DG))) * _TA / (1.0 + np.exp(_KA * (rel_a - _DA)))).astype(np.float32)


def _edge_scores(ys: np.ndarray, t: np.ndarray, v: np.ndarray, window: int) -> np.ndarray:
    st, sv = _sobel(t), _sobel(v)
    den = _box(st[0] + sv[0], window) + 1e-6
    out = []
    for y in ys:
        sy = _sobel(y)
        out.append(_box(_edge_kept(st, sy) * st[0] + _edge_kept(sv, sy) * sv[0], window) / den)
    return np.stack(out)


def _ssim_scores(ys: np.ndarray, t: np.ndarray, v: np.ndarray, window: int) -> np.ndarray:
    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = _box(x, window)
        return x, m, np.maximum(_box(x * x, window) - m * m, 0.0)

    def ssim_map(a: tuple, b: tuple) -> np.ndarray:
        (x, mx, vx), (y, my, vy) = a, b
        cov = _box(x * y, window) - mx * my
        return ((2 * mx * my + _SSIM_C1) * (2 * cov + _SSIM_C2)) / ((mx * mx + my * my + _SSIM_C1) * (vx + vy + _SSIM_C2))

    s_t, s_v = stats(t), stats(v)
    lam = s_t[2] / (s_t[2] + s_v[2] + 1e-8)
    out = []
    for y in ys:
        s_y = stats(y)
        out.append(lam * ssim_map(s_y, s_t) + (1.0 - lam) * ssim_map(s_y, s_v))
    return np.stack(out).astype(np.float32)


def _vif_scores(ys: np.ndarray, t: np.ndarray, v: np.ndarray, window: int) -> np.ndarray:
    # Pixel-domain VIF model of Sheikh & Bovik at one scale: y = g s + noise, the source information kept is
    # log2(1 + g² σ²_s / (σ²_noise + σ²_n)) out of log2(1 + σ²_s / σ²_n), summed over both sources.
    sigma_n = 2.0 / 255.0 ** 2                                  # the metric's sigma_nsq = 2 grey levels²

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = _box(x, window)
        return x, m, np.maximum(_box(x * x, window) - m * m, 0.0)

    srcs = [stats(t), stats(v)]
    den = sum(np.log2(1.0 + s[2] / sigma_n) for s in srcs) + 1e-6
    out = []
    for y in ys:
        yy = stats(y)
        kept = 0.0
        for x, mx, vx in srcs:
            cov = _box(x * y, window) - mx * yy[1]
            g = cov / (vx + 1e-10)
            noise = np.maximum(yy[2] - g * cov, 0.0)
            kept = kept + np.log2(1.0 + g * g * vx / (noise + sigma_n))
        out.append(_box(kept, window) / _box(den, window))
    return np.stack(out).astype(np.float32)


def _check_inputs(ys: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
    if ys.ndim != 3 or ys.shape[0] < 1:
        raise ShapeError(f"teacher outputs must be stacked as (N, H, W) with N >= 1, got shape {ys.shape}")
    if t.shape != ys.shape[1:] or v.shape != ys.shape[1:]:
        raise ShapeError(f"thermal {t.shape} and visible {v.shape} lumas must match the teacher outputs {ys.shape[1:]}")


def structure_scores(ys: np.ndarray, t: np.ndarray, v: np.ndarray, measure: str = "edge", window: int = 9) -> np.ndarray:
    """Per-pixel structure score of every teacher output (higher = more of the sources' local structure kept).

    Args:
        ys: (N, H, W) teacher luminances in [0, 1].
        t: (H, W) thermal luma in [0, 1].
        v: (H, W) visible luma in [0, 1].
        measure: ``edge`` (local Qabf), ``ssim`` (local source-variance-weighted SSIM), ``vif`` (local share of
            the sources' information kept), or several joined by ``+`` (the mean of their scores).
        window: odd box side the scores are averaged over.

    Returns:
        (N, H, W) float32.
    """
    ys, t, v = (np.asarray(a, np.float32) for a in (ys, t, v))
    _check_inputs(ys, t, v)
    parts = measure.split("+")
    fns = {"edge": _edge_scores, "ssim": _ssim_scores, "vif": _vif_scores}
    return sum(fns[m](ys, t, v, window) for m in parts) / len(parts)


def selection_weights(scores: np.ndarray, tau: float, prior: np.ndarray | None = None) -> np.ndarray:
    """Softmax over teachers of ``scores / tau`` times ``prior``; ``tau = 0`` puts weight 1 on the best (first on ties).

    Args:
        scores: (N, H, W) structure scores.
        tau: temperature >= 0.
        prior: (N,) teacher weights >= 0 (default: equal); they sum to 1 after normalisation.

    Returns:
        (N, H, W) float32 weights summing to 1 over N.
    """
    n = scores.shape[0]
    prior = np.full(n, 1.0 / n) if prior is None else np.asarray(prior, np.float64) / float(np.sum(prior))
    if tau == 0:
        live = np.where(prior[:, None, None] > 0, scores, -np.inf)
        best = np.argmax(live, axis=0)
        return (np.arange(n)[:, None, None] == best[None]).astype(np.float32)
    z = scores.astype(np.float64) / tau
    z = z - z.max(axis=0, keepdims=True)
    e = np.exp(z) * prior[:, None, None]
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def _gaussian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    pyr = [x]
    for _ in range(levels - 1):
        pyr.append(cv2.pyrDown(pyr[-1]))
    return pyr


def _laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    g = _gaussian_pyramid(x, levels)
    lap = [g[k] - cv2.pyrUp(g[k + 1], dstsize=g[k].shape[::-1]) for k in range(levels - 1)]
    return lap + [g[-1]]


def _collapse(lap: list[np.ndarray]) -> np.ndarray:
    x = lap[-1]
    for band in reversed(lap[:-1]):
        x = band + cv2.pyrUp(x, dstsize=band.shape[::-1])
    return x


def _pyramid_blend(ys: np.ndarray, weights: np.ndarray, levels: int) -> np.ndarray:
    # The coarsest level stays at least 8 px on its short side, so small images get fewer levels.
    levels = max(1, min(levels, int(math.log2(max(1, min(ys.shape[1:]) // 8))) + 1))
    acc = None
    for y, w in zip(ys, weights):
        bands = [gw * ly for gw, ly in zip(_gaussian_pyramid(w, levels), _laplacian_pyramid(y, levels))]
        acc = bands if acc is None else [a + b for a, b in zip(acc, bands)]
    return _collapse(acc)


def select_target(ys: np.ndarray, t: np.ndarray, v: np.ndarray, params: SelectParams = SelectParams(),
                  prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The selection target of one pair and the per-pixel teacher weights it used.

    Args:
        ys: (N, H, W) teacher luminances in [0, 1] (float), N >= 1.
        t: (H, W) thermal luma in [0, 1] (see :func:`source_lumas`).
        v: (H, W) visible luma in [0, 1].
        params: measure, window, temperature and blend.
        prior: (N,) teacher weights (default: equal).

    Returns:
        ``(target, weights)``: (H, W) float32 in [0, 1] and (N, H, W) float32 summing to 1 over N.

    Raises:
        ShapeError: shapes that do not match.

    Examples:
        >>> import numpy as np
        >>> y = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
        >>> tgt, w = select_target(y, y[0], y[0])
        >>> bool(np.allclose(tgt, y[0], atol=1e-5)), w.shape
        (True, (1, 32, 32))
    """
    ys, t, v = (np.asarray(a, np.float32) for a in (ys, t, v))
    _check_inputs(ys, t, v)
    if ys.shape[0] == 1:
        return ys[0].copy(), np.ones_like(ys)
    weights = selection_weights(structure_scores(ys, t, v, params.measure, params.window), params.tau, prior)
    if params.blend == "pixel":
        target = (weights * ys).sum(axis=0)
    else:
        target = _pyramid_blend(ys, weights, params.levels)
    return np.clip(target, 0.0, 1.0).astype(np.float32), weights


def pool_weights(weights: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel teacher weights (N, H, W) averaged onto a coarser (gh, gw) grid (area), renormalised to sum 1."""
    gh, gw = size
    pooled = np.stack([cv2.resize(w, (gw, gh), interpolation=cv2.INTER_AREA) for w in weights])
    return pooled / np.maximum(pooled.sum(axis=0, keepdims=True), 1e-8)
