"""The fusion student: a dual-encoder U-Net of ConvNeXt V2 blocks with a streaming memory.

Sources: FusionProxy distils a teacher ensemble into a single-pass student;
SDMFusion adds a flow-warped streaming memory read through gated local cross-attention;
ConvNeXt V2 (Woo et al. 2023) gives the block (7x7 depthwise, LayerNorm, MLP with GRN).

Design, and why:
- Both encoders start with a patchify (stride-``stem``) conv so every block runs at 1/stem resolution
  or lower; on a 2-core CPU full-resolution convolutions are what costs (a full-res U-Net is
  ~10x slower than the same depth at 1/4).
- The output head predicts, at 1/stem resolution, per-pixel coefficients of a local affine blend
  ``Y = a_t * T + a_v * Y_vis + b`` (bilinearly upsampled, smooth by construction) plus a
  pixel-shuffled full-resolution detail residual. It starts as a 50/50 blend, so even an
  untrained model gives a sensible picture.
- Colour: the fused luminance replaces the visible luminance and the visible chroma is kept
  (adding the same delta to R, G and B leaves BT.601 Cb/Cr unchanged). A frozen RGB detector
  sees the colours it was trained on.
- Temporal stability has two parts. The SDMFusion memory at 1/stride feeds past features into the
  decoder, but the decoder's skips and the full-resolution blend re-derive most of each frame from the
  current inputs, so it alone barely steadies the output. The output history (:class:`OutputHistory`)
  closes that gap: the previous fused luminance, packed into the same state tensor (and, in the default
  variant, warped by the adapter's flow), is blended into the current one where the two agree (an edge-preserving temporal
  filter with learned strength), so noise-driven frame-to-frame changes are damped and real changes pass.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion_ros.config import apply_overrides
from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.model.variants import ARCHITECTURES, DEFAULT_VARIANT, VARIANTS

__all__ = ["ModelConfig", "FusionStudent", "MODELS", "convert_norm", "create_model", "fold_for_inference", "rgb_to_luma"]

LUMA = (0.299, 0.587, 0.114)  # BT.601, the convention of the teachers' outputs
NORMS = ("layer", "batch")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the student. Defaults are the ``lite`` variant."""

    name: str = "lite"
    stem: int = 4                          # pixel-unshuffle factor; level 0 runs at 1/stem
    widths: tuple[int, ...] = (16, 32)     # channels per level; level i runs at 1/(stem*2^i)
    depths: tuple[int, ...] = (1, 1)       # ConvNeXt V2 blocks per level in each encoder
    decoder_depth: int = 1                 # ConvNeXt V2 blocks per decoder level
    mlp_ratio: float = 2.0                 # hidden width of the block MLP, x channels
    use_memory: bool = True                # streaming memory adapter on/off (off: image model)
    memory_channels: int = 16              # channels of the memory state
    attn_window: int = 3                   # side of the local cross-attention window (odd)
    max_flow: float = 4.0                  # largest flow the in-network flow head predicts, px at memory level
    history: bool = True                   # carry the previous fused luminance and blend it in (needs use_memory)
    history_warp: bool = True              # motion-compensate the history with the in-network flow (full-res warp)
    norm: str = "layer"                    # layer (ConvNeXt) | batch: folds into the convolutions, free at inference

    def __post_init__(self) -> None:
        if self.stem not in (1, 2, 4, 8):
            raise ConfigError(f"ModelConfig.stem={self.stem}; expected 1, 2, 4 or 8")
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ConfigError(f"ModelConfig.widths {self.widths} and depths {self.depths} must have the same non-zero length")
        if self.attn_window % 2 != 1:
            raise ConfigError(f"ModelConfig.attn_window={self.attn_window}; expected an odd number")
        if self.norm not in NORMS:
            raise ConfigError(f"ModelConfig.norm='{self.norm}'; expected one of {', '.join(NORMS)}")

    @property
    def stride(self) -> int:
        """Input sizes are padded to a multiple of this."""
        return self.stem * 2 ** (len(self.widths) - 1)

    @property
    def uses_history(self) -> bool:
        return self.use_memory and self.history

    @property
    def state_channels(self) -> int:
        """Channels of the whole state tensor: feature memory, then (with history) validity + packed luminance."""
        return self.memory_channels + (1 + self.stride ** 2 if self.uses_history else 0)

    def memory_shape(self, height: int, width: int, batch: int = 1) -> tuple[int, int, int, int]:
        """State tensor shape for an input of ``height`` x ``width`` (the rule the sidecar records)."""
        s = self.stride
        return (batch, self.state_channels, math.ceil(height / s), math.ceil(width / s))


MODELS = ARCHITECTURES      # variant name -> ModelConfig fields


def create_model(name: str = DEFAULT_VARIANT, **overrides) -> "FusionStudent":
    """Build a student by variant name (one of :data:`~fusion_ros.model.variants.VARIANTS`) with optional config
    overrides."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown model '{name}'; expected one of {sorted(VARIANTS)}")
    cfg = apply_overrides(ModelConfig(**MODELS[name]), overrides)
    return FusionStudent(cfg)


def rgb_to_luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of ``rgb`` (B, 3, H, W) in [0, 1] -> (B, 1, H, W)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (no permutes, exports as plain ops)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps
        self.affine = True        # False once the scale and shift live in the next convolution (fold_for_inference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(1, keepdim=True)
        y = xc * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2), NCHW."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps
        self.shift = True         # False once beta lives in the next convolution's bias (fold_for_inference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.sqrt((x * x).sum(dim=(2, 3), keepdim=True) + self.eps)
        nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
        # gamma * (x * nx) + x as one full-size product: the per-channel factor is (1, C, 1, 1).
        y = x * (self.gamma * nx + 1.0)
        return y + self.beta if self.shift else y


def make_norm(kind: str, channels: int) -> nn.Module:
    """The feature norm of ``ModelConfig.norm``: LayerNorm over channels, or BatchNorm (an affine map at inference)."""
    return LayerNorm2d(channels) if kind == "layer" else nn.BatchNorm2d(channels)


class ConvNeXtV2Block(nn.Module):
    """7x7 depthwise conv -> norm -> 1x1 expand -> GELU -> GRN -> 1x1 project, residual."""

    def __init__(self, channels: int, mlp_ratio: float = 2.0, norm: str = "layer") -> None:
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = make_norm(norm, channels)
        self.pw1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.grn = GRN(hidden)
        self.pw2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.grn(self.act(self.pw1(self.norm(self.dwconv(x))))))


class Encoder(nn.Module):
    """One modality's encoder: unshuffle stem, then a ConvNeXt V2 stage per level."""

    def __init__(self, in_ch: int, cfg: ModelConfig) -> None:
        super().__init__()
        # A stem x stem conv with stride stem equals pixel-unshuffle + 1x1 conv, without the
        # full-resolution transpose that cost ~4 ms of a 20 ms CPU frame.
        self.stem = nn.Sequential(nn.Conv2d(in_ch, cfg.widths[0], cfg.stem, stride=cfg.stem), make_norm(cfg.norm, cfg.widths[0]))
        self.downs = nn.ModuleList()
        self.stages = nn.ModuleList()
        for i, (w, d) in enumerate(zip(cfg.widths, cfg.depths)):
            if i > 0:
                self.downs.append(nn.Sequential(make_norm(cfg.norm, cfg.widths[i - 1]), nn.Conv2d(cfg.widths[i - 1], w, 2, stride=2)))
            self.stages.append(nn.Sequential(*[ConvNeXtV2Block(w, cfg.mlp_ratio, cfg.norm) for _ in range(d)]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downs[i - 1](x)
            x = stage(x)
            feats.append(x)
        return feats


class ResidualFusionHead(nn.Module):
    """``F_out = proj(Attn(F_cat) * F_cat) + F_ir + F_vis`` with sigmoid channel attention on the concatenation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attn = nn.Sequential(nn.Conv2d(2 * channels, max(channels // 2, 8), 1), nn.GELU(),
                                  nn.Conv2d(max(channels // 2, 8), 2 * channels, 1), nn.Sigmoid())
        self.proj = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, f_ir: torch.Tensor, f_vis: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([f_ir, f_vis], 1)
        return self.proj(self.attn(cat.mean(dim=(2, 3), keepdim=True)) * cat) + f_ir + f_vis


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, h, w) at each pixel centre displaced by ``flow`` (B, 2, h, w), pixels (x, y)."""
    h, w = image.shape[-2], image.shape[-1]
    ys = (torch.arange(h, dtype=image.dtype, device=image.device) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, dtype=image.dtype, device=image.device) + 0.5) * (2.0 / w) - 1.0
    gx = xs.view(1, 1, w).expand(1, h, w) + flow[:, 0] * (2.0 / w)
    gy = ys.view(1, h, 1).expand(1, h, w) + flow[:, 1] * (2.0 / h)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def bilinear_phase_kernel(scale: int, channels: int = 1) -> torch.Tensor:
    """Bilinear upsampling by an integer ``scale`` (align_corners=False) as one 3x3 filter per output phase.

    Returns (channels * scale^2, 1, 3, 3), the filters repeated per channel for a grouped convolution; filter
    ``i * scale + j`` gives output pixel ``(scale * y + i, scale * x + j)`` from the
    3x3 neighbourhood of input pixel ``(y, x)``. Output phase ``p`` lies ``(p + 0.5) / scale - 0.5`` input pixels
    from its input pixel's centre, so two of the three taps per axis carry weight.
    """
    taps = []          # plain floats: a kernel built from tensor ops would be traced into the exported graph
    for p in range(scale):
        offset = (p + 0.5) / scale - 0.5
        taps.append([-offset, 1.0 + offset, 0.0] if offset < 0 else [0.0, 1.0 - offset, offset])
    kernel = [[[[ty * tx for tx in row_x] for ty in row_y]] for row_y in taps for row_x in taps]
    return torch.tensor(kernel * channels)


def bilinear_phases(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bilinear upsampling of ``x`` (B, C, h, w) by ``scale``, still packed: (B, C * scale^2, h, w), phase
    ``c * scale^2 + i * scale + j`` holding output pixels ``(scale * y + i, scale * x + j)`` of channel ``c`` (the
    layout ``F.pixel_unshuffle`` gives). An edge pad and a grouped 3x3 convolution (:func:`bilinear_phase_kernel`).
    """
    channels = int(x.shape[1])       # fixed by the architecture, so the kernel is a constant of the graph
    kernel = bilinear_phase_kernel(scale, channels).to(dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)


def window_kernel(channels: int, window: int) -> torch.Tensor:
    """One-hot kernels of :func:`window_stack`: (channels * window^2, 1, window, window)."""
    n = window * window
    return torch.eye(n).view(n, 1, window, window).repeat(channels, 1, 1, 1)


def window_stack(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Every k x k neighbour of each pixel, zero outside: (B, C, H, W) -> (B, C, k^2, H, W).

    ``kernel`` is :func:`window_kernel` of (C, k). Neighbour ``i = dy * k + dx`` is the value at offset
    ``(dy - k // 2, dx - k // 2)``. One grouped convolution with one-hot kernels: on a CPU it costs a fraction of
    ``k^2`` slices of a padded copy.
    """
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    return F.conv2d(x, kernel, padding=k // 2, groups=c).view(b, c, k * k, h, w)


class MemoryAdapter(nn.Module):
    """Streaming memory (SDMFusion): flow-warped memory read by gated local cross-attention.

    Q from current features, K, V from the memory warped by an in-network flow,
    gate ``g = sigmoid(conv([F, M~]))``, ``A = softmax((Q*g)(K*g)^T / sqrt(C))`` over a k x k window,
    ``F^ = F + A V``, new memory ``M = phi(F^)``. A zero memory gives K = V = 0, so ``F^ = F``:
    the first frame is fused exactly as a still image.
    """

    def __init__(self, channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        cm = cfg.memory_channels
        self.window = cfg.attn_window
        self.max_flow = cfg.max_flow
        self.key_dim = cm
        self.to_flow_feat = nn.Conv2d(channels, cm, 1)
        self.flow = nn.Sequential(nn.Conv2d(2 * cm, 2 * cm, 3, padding=1), nn.GELU(), nn.Conv2d(2 * cm, 2, 3, padding=1))
        self.gate = nn.Conv2d(channels + cm, cm, 1)
        self.q = nn.Conv2d(channels, cm, 1)
        self.k = nn.Conv2d(cm, cm, 1, bias=False)
        self.v = nn.Conv2d(cm, channels, 1, bias=False)
        self.phi = nn.Conv2d(channels, cm, 1)
        nn.init.zeros_(self.flow[-1].weight)
        nn.init.zeros_(self.flow[-1].bias)
        # Constants, not weights: kept out of the state dict.
        self.register_buffer("key_window", window_kernel(cm, self.window), persistent=False)
        self.register_buffer("value_window", window_kernel(channels, self.window), persistent=False)

    def forward(self, feat: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(F^, new memory, flow)``; the flow (B, 2, h, w), px at this level, also warps the output history."""
        flow = self.max_flow * torch.tanh(self.flow(torch.cat([self.to_flow_feat(feat), memory], 1)))
        warped = backward_warp(memory, flow)
        g = torch.sigmoid(self.gate(torch.cat([feat, warped], 1)))
        # (Q g)(K g)^T / sqrt(C) with both gates and the scale on the query side, once, not per window offset.
        q = self.q(feat) * (g * g * (1.0 / math.sqrt(self.key_dim)))
        k = self.k(warped)
        v = self.v(warped)
        keys = window_stack(k, self.key_window)                                # (B, C, k*k, h, w)
        attn = torch.softmax((q.unsqueeze(2) * keys).sum(1), dim=1)            # (B, k*k, h, w)
        read = (window_stack(v, self.value_window) * attn.unsqueeze(1)).sum(2)  # (B, C, h, w)
        out = feat + read
        return out, self.phi(out), flow


class _PackLuma(torch.autograd.Function):
    """``pixel_unshuffle`` of a one-channel map, exported as ONNX SpaceToDepth.

    For one channel the two orderings agree; the exporter's default (Reshape, Transpose, Reshape) cost ~1 ms
    at 480x640 in ONNX Runtime on a CPU, SpaceToDepth a fraction of it.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, s: int) -> torch.Tensor:
        ctx.s = s
        return F.pixel_unshuffle(y, s)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return F.pixel_shuffle(grad, ctx.s), None

    @staticmethod
    def symbolic(g, y, s: int):
        return g.op("SpaceToDepth", y, blocksize_i=s)


class OutputHistory(nn.Module):
    """Edge-preserving temporal filter of the fused luminance, carried in the state tensor.

    ``Y = Y_cur + g * (warp(Y_prev) - Y_cur)`` with ``g = valid * g_max * exp(-((warp(Y_prev) - Y_cur) / w)^2)``.
    ``g_max`` (at most ``max_blend``) and the tolerance ``w`` come per pixel from the fused features at
    1/stride, so the network learns where history is trustworthy. Small differences (sensor noise, compression,
    coefficient jitter) are damped; large ones (motion the flow missed, occlusions, a person stepping in) pass
    unchanged. The warp uses the memory adapter's flow, upsampled, so the whole filter runs inside the engine.
    State layout (after the feature memory): one validity channel (1 once a frame was fused, so a zero state
    leaves the first frame exact), then the luminance packed by pixel-unshuffle into ``stride^2`` channels.
    """

    def __init__(self, channels: int, stride: int, warp: bool = True, max_blend: float = 0.85) -> None:
        super().__init__()
        self.stride = stride
        self.warp = warp
        self.max_blend = max_blend
        self.packed = False      # set by fold_for_inference for export (see FusionStudent.packed)
        self.params = nn.Conv2d(channels, 2, 1)      # -> blend strength logit, tolerance pre-softplus
        nn.init.zeros_(self.params.weight)
        with torch.no_grad():
            self.params.bias.copy_(torch.tensor([0.0, math.log(math.expm1(0.03))]))   # g_max ~0.43, w ~8 grey levels

    def _strength_and_tolerance(self, feat: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, 2, h, w): the blend strength ``g_max`` (0 on a zero state) and ``1 / w``, at 1/stride."""
        p = self.params(feat)
        return torch.cat([self.max_blend * torch.sigmoid(p[:, 0:1]) * valid, 1.0 / (F.softplus(p[:, 1:2]) + 1e-3)], 1)

    def forward(self, y_cur: torch.Tensor, feat: torch.Tensor, flow: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.packed and not self.warp:
            return self._forward_packed(y_cur, feat, state)
        s = self.stride
        up = dict(scale_factor=float(s), mode="bilinear", align_corners=False)
        valid = state[:, 0:1]
        y_prev = F.pixel_shuffle(state[:, 1:], s)
        if self.warp:
            y_prev = backward_warp(y_prev, F.interpolate(flow, **up) * float(s))
        diff = y_prev - y_cur
        # Both maps upsampled in one resize: full-resolution ops are what costs on a CPU.
        full = F.interpolate(self._strength_and_tolerance(feat, valid), **up)
        g = full[:, 0:1] * torch.exp(-(diff * full[:, 1:2]) ** 2)
        y = y_cur + g * diff
        return y, torch.cat([torch.ones_like(valid), _PackLuma.apply(y.clamp(0.0, 1.0), s)], 1)

    def _forward_packed(self, y_cur: torch.Tensor, feat: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` without the warp, on the packed luminance: the state holds the previous frame packed
        already, and the strength and tolerance stay as bilinear phases, so only the current luminance is packed and
        the result unpacked."""
        s = self.stride
        n = s * s
        valid = state[:, 0:1]
        y = _PackLuma.apply(y_cur, s)
        diff = state[:, 1:] - y
        full = bilinear_phases(self._strength_and_tolerance(feat, valid), s)
        y = y + full[:, :n] * torch.exp(-(diff * full[:, n:]) ** 2) * diff
        return F.pixel_shuffle(y, s), torch.cat([torch.ones_like(valid), y.clamp(0.0, 1.0)], 1)


class FusionStudent(nn.Module):
    """Dual-encoder U-Net fusion student.

    Forward: ``(thermal, visible, memory) -> (fused, new_memory)``.

    Args:
        thermal: (B, 1, H, W) float32 in [0, 1].
        visible: (B, 3, H, W) float32 RGB in [0, 1].
        memory: (B, cfg.state_channels, ceil(H/s), ceil(W/s)) with s = ``cfg.stride``; zeros = first frame.

    Returns:
        fused: (B, 3, H, W) RGB in [0, 1]; new_memory: same shape as ``memory``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.enc_ir = Encoder(1, cfg)
        self.enc_vis = Encoder(3, cfg)
        self.fuse = nn.ModuleList([ResidualFusionHead(c) for c in w])
        self.adapter = MemoryAdapter(w[-1], cfg) if cfg.use_memory else None
        self.history = OutputHistory(w[-1], cfg.stride, cfg.history_warp) if cfg.uses_history else None
        self.up_proj = nn.ModuleList([nn.Conv2d(w[i + 1] + w[i], w[i], 1) for i in range(len(w) - 1)])
        self.dec = nn.ModuleList([nn.Sequential(*[ConvNeXtV2Block(w[i], cfg.mlp_ratio, cfg.norm) for _ in range(cfg.decoder_depth)])
                                  for i in range(len(w) - 1)])
        self.coeff = nn.Conv2d(w[0], 3, 3, padding=1)          # a_t - 0.5, a_v - 0.5, b at 1/stem (see blend_offset)
        self.detail = nn.Sequential(nn.Conv2d(w[0], cfg.stem ** 2, 3, padding=1), nn.PixelShuffle(cfg.stem))
        for conv in (self.coeff, self.detail[0]):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        # The export's form of the same function (fold_for_inference sets it): each decoder level's 1x1 projection
        # before its upsampling (they commute; half the channels are upsampled), and the blend and the history on
        # pixel-unshuffled maps at low resolution with the coefficients as bilinear phases. ONNX Runtime's CPU
        # provider ran those upsamplings as Resizes over blocks of 8 channels, for 2- and 3-channel maps.
        self.packed = False
        self.blend_offset = 0.5   # the 50/50 start of a_t and a_v; 0 once it lives in coeff's bias (fold_for_inference)

    @property
    def stride(self) -> int:
        return self.cfg.stride

    def train(self, mode: bool = True) -> "FusionStudent":
        super().train(mode)
        if mode:
            # A BatchNorm whose weights are frozen (stage II trains the temporal modules only) keeps its statistics too.
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def memory_shape(self, height: int, width: int, batch: int = 1) -> tuple[int, int, int, int]:
        return self.cfg.memory_shape(height, width, batch)

    def zero_memory(self, height: int, width: int, batch: int = 1) -> torch.Tensor:
        p = next(self.parameters())
        return torch.zeros(self.memory_shape(height, width, batch), dtype=p.dtype, device=p.device)

    def _check(self, thermal: torch.Tensor, visible: torch.Tensor, memory: torch.Tensor) -> None:
        if thermal.dim() != 4 or thermal.shape[1] != 1:
            raise ShapeError(f"thermal must be (B, 1, H, W), got {tuple(thermal.shape)}")
        if visible.dim() != 4 or visible.shape[1] != 3 or visible.shape[-2:] != thermal.shape[-2:]:
            raise ShapeError(f"visible must be (B, 3, H, W) matching thermal {tuple(thermal.shape)}, got {tuple(visible.shape)}")
        expect = self.memory_shape(thermal.shape[-2], thermal.shape[-1], thermal.shape[0])
        if tuple(memory.shape) != expect:
            raise ShapeError(f"memory must be {expect} for a {thermal.shape[-2]}x{thermal.shape[-1]} input, got {tuple(memory.shape)}")

    def _up_and_project(self, level: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``up_proj[level]`` of ``[upsampled x, skip]``."""
        conv = self.up_proj[level]
        if not self.packed:
            return conv(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), skip], 1))
        cx = x.shape[1]
        return (F.interpolate(F.conv2d(x, conv.weight[:, :cx], conv.bias), scale_factor=2.0, mode="bilinear",
                              align_corners=False)
                + F.conv2d(skip, conv.weight[:, cx:]))

    def _coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """``(a_t, a_v, b)`` at 1/stem."""
        coeff = self.coeff(x)
        if self.blend_offset:   # at 1/stem, before the upsampling, which keeps constants
            coeff = coeff + coeff.new_tensor([self.blend_offset, self.blend_offset, 0.0]).view(1, 3, 1, 1)
        return coeff

    def _blend(self, x: torch.Tensor, t: torch.Tensor, y_vis: torch.Tensor) -> torch.Tensor:
        """The fused luminance ``a_t * T + a_v * Y_vis + b + detail`` at full resolution."""
        coeff = F.interpolate(self._coefficients(x), scale_factor=float(self.cfg.stem), mode="bilinear",
                              align_corners=False)
        return coeff[:, 0:1] * t + coeff[:, 1:2] * y_vis + coeff[:, 2:3] + self.detail(x)

    def _blend_packed(self, x: torch.Tensor, t: torch.Tensor, y_vis: torch.Tensor) -> torch.Tensor:
        """:meth:`_blend` on maps packed by ``stem``: the thermal image and the visible luma pixel-unshuffled, the
        coefficients as bilinear phases, the detail before its pixel shuffle; one shuffle at the end."""
        k = self.cfg.stem
        n = k * k
        coeff = bilinear_phases(self._coefficients(x), k)
        y = coeff[:, :n] * _PackLuma.apply(t, k) + coeff[:, n:2 * n] * _PackLuma.apply(y_vis, k) + coeff[:, 2 * n:]
        return F.pixel_shuffle(y + self.detail[0](x), k)

    def forward(self, thermal: torch.Tensor, visible: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self._check(thermal, visible, memory)
        h, w = thermal.shape[-2], thermal.shape[-1]
        s = self.cfg.stride
        # Pad to a multiple of the stride with edge values; cropped back at the end.
        ph = (s - h % s) % s
        pw = (s - w % s) % s
        t = F.pad(thermal, (0, pw, 0, ph), mode="replicate")
        v = F.pad(visible, (0, pw, 0, ph), mode="replicate")

        f_ir = self.enc_ir(t)
        f_vis = self.enc_vis(v)
        fused = [head(a, b) for head, a, b in zip(self.fuse, f_ir, f_vis)]
        x = fused[-1]
        cm = self.cfg.memory_channels
        if self.adapter is not None:
            x, new_memory, flow = self.adapter(x, memory[:, :cm])
            low = x
        else:
            new_memory = memory
        for i in range(len(fused) - 2, -1, -1):
            x = self.dec[i](self._up_and_project(i, x, fused[i]))
        y_vis = rgb_to_luma(v)
        y = self._blend_packed(x, t, y_vis) if self.packed else self._blend(x, t, y_vis)
        if self.history is not None:
            y, packed = self.history(y, low, flow, memory[:, cm:])
            new_memory = torch.cat([new_memory, packed], 1)
        # Crop the one-channel delta, not the three-channel result: full-resolution copies are what costs.
        return torch.clamp(visible + (y - y_vis)[:, :, :h, :w], 0.0, 1.0), new_memory


def _norm_as_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` of a norm's affine part: LayerNorm's weight and bias, or all of an eval BatchNorm."""
    if isinstance(norm, nn.BatchNorm2d):
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        return scale, norm.bias - norm.running_mean * scale
    return norm.weight.view(-1), norm.bias.view(-1)


def _affine_into_next(scale: torch.Tensor, shift: torch.Tensor, conv: nn.Conv2d) -> None:
    """``conv(scale * x + shift)`` as one convolution of ``x`` (no padding, so exact everywhere)."""
    conv.bias.add_((conv.weight * shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3)))
    conv.weight.mul_(scale.view(1, -1, 1, 1))


def _affine_into_previous(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``scale * conv(x) + shift`` as one convolution of ``x``."""
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.mul_(scale).add_(shift)


def _fold_shift_into(grn: GRN, conv: nn.Conv2d) -> None:
    """Move GRN's beta into the bias of the 1x1 ``conv`` that reads it."""
    beta = grn.beta.view(-1)
    _affine_into_next(torch.ones_like(beta), beta, conv)
    grn.shift = False


def _fold_norm(parent: nn.Module, name: str, before: nn.Conv2d | None, after: nn.Conv2d | None) -> None:
    """Fold norm ``parent.<name>``: a BatchNorm entirely into ``before`` (or ``after``), replaced by an identity; a
    LayerNorm's scale and shift into ``after`` (its normalisation stays)."""
    norm = getattr(parent, name)          # a Sequential's children are attributes "0", "1", ... too
    scale, shift = _norm_as_affine(norm)
    if isinstance(norm, nn.BatchNorm2d):
        _affine_into_previous(before, scale, shift) if before is not None else _affine_into_next(scale, shift, after)
        setattr(parent, name, nn.Identity())
    elif after is not None:
        _affine_into_next(scale, shift, after)
        norm.affine = False


@torch.no_grad()
def fold_for_inference(model: FusionStudent, packed: bool = False) -> FusionStudent:
    """A copy of ``model`` with the same function and fewer full-size operations, for export.

    Each per-channel scale or shift that a padding-free convolution reads next is moved into that convolution
    (LayerNorm before a block's 1x1 expand and before a 2x2 downsampling; GRN's beta before the 1x1 project), and the
    50/50 start of the blend into ``coeff``'s bias (bilinear upsampling keeps constants). A BatchNorm (``norm:
    batch``) goes entirely, into the convolution before it (or, before a downsampling, after it). Element-wise work
    on feature maps is most of this graph's CPU time. A LayerNorm after the stem keeps its scale and shift: its output
    also feeds a residual and a zero-padded depthwise convolution. Outputs agree with ``model`` to float rounding
    (tested). ``packed`` selects the export's form of the same function (:attr:`FusionStudent.packed`; the ONNX
    export sets it).
    """
    folded = copy.deepcopy(model).eval()
    folded.packed = packed
    if folded.history is not None:
        folded.history.packed = packed
    for module in folded.modules():
        if isinstance(module, ConvNeXtV2Block):
            _fold_norm(module, "norm", module.dwconv, module.pw1)
            _fold_shift_into(module.grn, module.pw2)
    for encoder in (folded.enc_ir, folded.enc_vis):
        _fold_norm(encoder.stem, "1", encoder.stem[0], None)
        for down in encoder.downs:
            _fold_norm(down, "0", None, down[1])
    folded.coeff.bias[:2].add_(folded.blend_offset)
    folded.blend_offset = 0.0
    return folded


@torch.no_grad()
def convert_norm(model: FusionStudent, norm: str) -> FusionStudent:
    """``model`` with its feature norms of kind ``norm``, to fine-tune from: every other weight is kept, a norm's scale
    and shift carry over, a new BatchNorm's statistics start at zero mean and unit variance."""
    converted = FusionStudent(dataclasses.replace(model.cfg, norm=norm))
    target = converted.state_dict()
    for key, value in model.state_dict().items():
        if key in target and target[key].numel() == value.numel():
            target[key] = value.reshape(target[key].shape).clone()
    converted.load_state_dict(target)
    return converted.train(model.training)
