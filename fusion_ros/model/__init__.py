"""The fusion student network and its streaming memory (``student``), and its on-disk format (``artifact``).

The student's names load on first use, so that reading and checking an artifact imports no torch.
"""

__all__ = ["MODELS", "FusionStudent", "ModelConfig", "create_model", "rgb_to_luma"]


def __getattr__(name: str):
    if name in __all__:
        from fusion_ros.model import student

        return getattr(student, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
