"""The model zoo: registry, the classic networks, spec resolution, the book's recipes and results.

  registry  registered models, globs, suggestions;  d2l, library, paper  the entries
  spec      a spec string or module resolved to something buildable;  twin  twins of live modules
  resolution  what a user names -> resolved specs (globs, repeats, data-set settling)
  sizes     the one reader of input sizes: every model's, or MODEL=SIZE per model
  book      the book's training recipes and results for the Dive-into-DL entries (data)

Importing the package registers every zoo entry (the entry modules import the registry, never
the other way round); nothing here imports torch until a model is built. May import: errors,
units, results, plumbing, user_code.
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
