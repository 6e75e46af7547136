"""The student variants: their names and architectures, in one table (torch-free).

``models/fusion_<variant>.onnx`` is a variant's trained model (``fusion-ros train --config
config/train/<variant>.yaml`` writes it); ``lite`` is the one shipped, and the one used when no model is named.
"""

from __future__ import annotations

__all__ = ["ARCHITECTURES", "DEFAULT_VARIANT", "VARIANTS"]

# ModelConfig fields of each variant; the fields not named keep ModelConfig's defaults.
ARCHITECTURES: dict[str, dict] = {
    "lite": dict(name="lite", stem=4, widths=(16, 32), depths=(1, 1), decoder_depth=1, memory_channels=16,
                 history_warp=False),   # the full-resolution warp would cost ~10 ms of its ~27 ms on one core
    "default": dict(name="default", stem=2, widths=(24, 48, 96), depths=(1, 2, 2), decoder_depth=1,
                    memory_channels=32),
}

VARIANTS: tuple[str, ...] = tuple(ARCHITECTURES)
DEFAULT_VARIANT = "lite"
