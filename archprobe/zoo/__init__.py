"""The model zoo: registry, the classic networks, and spec resolution."""

from archprobe.zoo.registry import ModelInfo, canonical_name, get_model_info, list_models
from archprobe.zoo.spec import ModelSpec, parse_input_size, resolve

__all__ = [
    "ModelInfo",
    "ModelSpec",
    "canonical_name",
    "get_model_info",
    "list_models",
    "parse_input_size",
    "resolve",
]
