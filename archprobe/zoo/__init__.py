"""The model zoo: registry, the classic networks, and spec resolution.

Importing the package registers every zoo entry (the entry modules import the registry, never
the other way round); nothing here imports torch until a model is built.
"""

from archprobe.zoo import d2l, library, paper  # noqa: F401  (register the entries)
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
