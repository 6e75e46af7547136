"""The fusion student network and its streaming memory."""

from fusion_ros.model.student import MODELS, FusionStudent, ModelConfig, create_model, rgb_to_luma

__all__ = ["MODELS", "FusionStudent", "ModelConfig", "create_model", "rgb_to_luma"]
