"""Input sizes per model: the one reader of ``--input-size`` and ``input_size=``.

A size (``224``, ``"96x128"``, ``"3x224x224"``, ``(3, 224, 224)``) is every model's; ``MODEL=SIZE``
(repeatable on the command line) or a mapping ``{MODEL: SIZE}`` gives one model its own, the
others keeping a plain size given beside it (``None`` as the mapping's key) or their default.
``MODEL`` is a model as typed (case, ``_`` and ``-`` interchangeable) or a glob over the models
given (``'resnet*'``); one that names none of them is a usage error. Where a glob and a name
both match, the name wins.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Mapping

from archprobe.errors import UsageError

GLOB_CHARS = "*?["


def _fold(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def _is_entries(value: Any) -> bool:
    """Command-line text: ``"SIZE"``, ``"MODEL=SIZE"`` or several of them."""
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and bool(value)
                                      and all(isinstance(v, str) for v in value))


def parse_input_sizes(value: Any) -> Any:
    """``value`` as a plain size (every model's; ``None`` for none) or a dict ``{MODEL: SIZE}``
    with the plain size, if any, under ``None``.

    Args:
        value: ``None``; a size (``int``, ``(H, W)``, ``(C, H, W)``, ``"CxHxW"``); ``"MODEL=SIZE"``;
            a list of such texts (the repeated command-line option); or a mapping.

    Raises:
        UsageError: a size that is not one, two sizes for the same model, or an empty model name.
    """
    from archprobe.zoo.spec import normalise_input_size

    if isinstance(value, Mapping):
        entries = list(value.items())
    elif _is_entries(value):
        entries = []
        for text in [value] if isinstance(value, str) else value:
            model, sep, size = text.rpartition("=")
            if sep and not model.strip():
                raise UsageError(f"{text!r} names no model: use SIZE or MODEL=SIZE", param="input_size")
            entries.append((model.strip() if sep else None, size))
    else:
        normalise_input_size(value)  # a size, or the error saying what one is
        return value
    sizes: dict[str | None, Any] = {}
    for model, size in entries:
        if model is not None and not isinstance(model, str):
            raise UsageError(f"{model!r} is not a model name: the keys are models as typed", param="input_size")
        normalise_input_size(size)  # checked now, with the message every size gets
        key = None if model is None else _fold(model)
        if key in sizes and normalise_input_size(sizes[key][1]) != normalise_input_size(size):
            whose = f"model {model!r}" if model is not None else "every model"
            raise UsageError(f"two sizes for {whose}: {sizes[key][1]} and {size}", param="input_size")
        sizes[key] = (model, size)
    if list(sizes) == [None]:
        return sizes[None][1]
    return {model: size for model, size in sizes.values()}


def _matches(key: str, name: str) -> bool:
    if any(ch in key for ch in GLOB_CHARS):
        return fnmatch.fnmatchcase(_fold(name), _fold(key))
    return _fold(key) == _fold(name)


def _name(model: Any) -> str | None:
    """The name a size's key is matched with: the spec as typed, a resolved spec's name."""
    if isinstance(model, str):
        return model
    return getattr(model, "name", None) if type(model).__name__ == "ModelSpec" else None


def sizes_for(models: Iterable[Any], input_size: Any) -> list[Any]:
    """Each model's input size, in order (``None``: the model's default).

    Raises:
        UsageError: a ``MODEL`` key that names none of ``models``.
    """
    models = list(models)
    sizes = parse_input_sizes(input_size)
    if not isinstance(sizes, dict):
        return [sizes] * len(models)
    default = sizes.get(None)
    keyed = [k for k in sizes if k is not None]
    used: set[str] = set()
    found = []
    for model in models:
        name = _name(model)
        hits = [k for k in keyed if name is not None and _matches(k, name)]
        exact = [k for k in hits if not any(ch in k for ch in GLOB_CHARS)]
        used.update(hits)
        found.append(sizes[(exact or hits)[0]] if hits else default)
    unknown = [k for k in keyed if k not in used]
    if unknown:
        given = ", ".join(n for n in map(_name, models) if n) or "none"
        raise UsageError(f"{unknown[0]!r} is not one of the models given ({given}); "
                         f"use MODEL=SIZE with a model as typed", param="input_size")
    return found


def size_for(model: Any, input_size: Any) -> Any:
    """The input size of one model (see :func:`sizes_for`)."""
    (size,) = sizes_for([model], input_size)
    return size
