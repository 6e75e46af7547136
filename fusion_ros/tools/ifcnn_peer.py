"""The IFCNN-MAX network's CPU time per frame, for ``fusion-ros bench --compare-cmd``.

IFCNN (Zhang et al., Information Fusion 2020) is the fastest of the published fusers whose outputs are this
project's teachers. This module builds its network as the paper and its released test code define it, with random
weights: a 7x7 convolution of 64 filters (ResNet-101's first layer, at stride 1, after an edge pad of 3) and a 3x3
convolution block (edge pad, convolution, BatchNorm, ReLU) per input, the element-wise maximum of the two inputs'
features, another 3x3 block and a 1x1 convolution to 3 channels; each input a gray image replicated to 3 channels and
normalised with the ImageNet mean and deviation, the output denormalised and clamped. The time of a convolution
does not depend on its weights' values, so this times the network the teacher outputs came from without its
weights, which are not part of this project.

Prints one JSON line, ``{"ms_per_frame": ...}``, the median over ``--frames`` frames after one warm-up frame,
which ``fusion-ros bench --compare-cmd`` takes in place of the wall time of the whole command (start-up included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ConvBlock(nn.Module):
    """Edge pad 1, 3x3 convolution without bias, BatchNorm, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))))


class IFCNNMax(nn.Module):
    """IFCNN with the element-wise maximum fusion rule (its "IFCNN-MAX" weights), two inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, bias=False)
        self.conv2 = _ConvBlock(64)
        self.conv3 = _ConvBlock(64)
        self.conv4 = nn.Conv2d(64, 3, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(F.pad(x, (3, 3, 3, 3), mode="replicate")))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv4(self.conv3(torch.maximum(self.features(a), self.features(b))))


def fuse(net: IFCNNMax, thermal: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """One frame as the released test script runs it: (1, 1, H, W) gray images in [0, 1] -> fused gray in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = net((thermal.expand(-1, 3, -1, -1) - mean) / std, (luma.expand(-1, 3, -1, -1) - mean) / std)
    return (out * std + mean).clamp(0.0, 1.0).mean(1, keepdim=True)


def time_frames(height: int, width: int, frames: int, threads: int = 0) -> float:
    """Median ms per frame over ``frames`` frames of random images, after one warm-up frame."""
    if threads:
        torch.set_num_threads(threads)
    net = IFCNNMax().eval()
    g = torch.Generator().manual_seed(0)
    thermal, luma = torch.rand(1, 1, height, width, generator=g), torch.rand(1, 1, height, width, generator=g)
    times = []
    with torch.inference_mode():
        fuse(net, thermal, luma)
        for _ in range(frames):
            t0 = time.perf_counter()
            fuse(net, thermal, luma)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="480x640", help="HxW")
    p.add_argument("--frames", type=int, default=3, help="timed frames after one warm-up frame")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = torch's default (all cores)")
    args = p.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    print(json.dumps({"ms_per_frame": round(time_frames(height, width, args.frames, args.threads), 2),
                      "network": "IFCNN-MAX, random weights", "size": [height, width], "frames": args.frames}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
