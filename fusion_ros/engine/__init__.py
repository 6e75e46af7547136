"""Inference backends behind one interface, and the TensorRT engine cache."""

from fusion_ros.engine.base import BACKENDS, PRECISIONS, Backend, EngineConfig, default_model_path, resolve_model_path, \
    shipped_variants
from fusion_ros.engine.cache import EngineCache, EngineKey, shape_profile
from fusion_ros.engine.factory import available_backends, create_backend

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "EngineCache", "EngineConfig", "EngineKey", "available_backends",
           "create_backend", "default_model_path", "resolve_model_path", "shape_profile", "shipped_variants"]
