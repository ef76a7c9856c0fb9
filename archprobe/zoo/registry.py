"""The model registry: named builders with their metadata, refusing duplicates.

Patterned on torchvision's ``register_model``/``list_models`` and timm's natural sort.
Names are case-insensitive and ``_``/``-`` are interchangeable; the canonical form is
lower-case with ``-``.

The registry imports none of its clients: the entry modules (``d2l``, ``library``, ``paper``)
import it and register on import, and the package (``archprobe.zoo``) imports them, as
torchvision's ``models/__init__.py`` does. Importing anything under ``archprobe.zoo`` runs the
package first, so the registry is always full when it is read.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from archprobe.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

Builder = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class ModelInfo:
    """Metadata kept next to a builder (cf. timm ``PretrainedCfg``, torchvision ``_COMMON_META``).

    ``builder(in_channels=..., num_classes=...)`` returns the module; it is called under
    ``torch.device("meta")`` for static analysis, so it must not touch tensor data.
    """

    name: str
    family: str
    variant: str  # "imagenet" or "d2l"
    input_shape: tuple[int, int, int]  # default (C, H, W)
    num_classes: int
    paper: str
    year: int
    source: str  # "archprobe", "torchvision" or "timm"
    builder: Builder = field(repr=False, compare=False)
    notes: str = ""

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]


_REGISTRY: dict[str, ModelInfo] = {}


def lazy_builder(target: str, **fixed) -> Builder:
    """A builder calling ``module:attr(in_channels, num_classes, **fixed)``, importing the
    module only when it runs, so listing the zoo never imports torch."""
    module_name, _, attr = target.partition(":")

    def build(in_channels: int, num_classes: int):
        return getattr(importlib.import_module(module_name), attr)(in_channels, num_classes, **fixed)

    build.__qualname__ = f"lazy_builder({target!r})"
    return build


def canonical_name(name: str) -> str:
    """``Inception_V3`` -> ``inception-v3``."""
    return name.strip().lower().replace("_", "-")


def register(info: ModelInfo) -> ModelInfo:
    key = canonical_name(info.name)
    if key != info.name:
        raise ValueError(f"model names must be canonical ({key!r}, not {info.name!r})")
    if key in _REGISTRY:
        raise ValueError(f"model {key!r} is already registered")
    _REGISTRY[key] = info
    return info


def register_model(
    name: str,
    *,
    family: str,
    variant: str,
    paper: tuple[str, int],
    input_shape: tuple[int, int, int],
    num_classes: int,
    source: str,
    builder: Builder,
    notes: str = "",
) -> ModelInfo:
    """``register`` with the paper given as ``(title, year)``, as in ``archprobe.zoo.papers``."""
    return register(
        ModelInfo(
            name=name,
            family=family,
            variant=variant,
            input_shape=input_shape,
            num_classes=num_classes,
            paper=paper[0],
            year=paper[1],
            source=source,
            builder=builder,
            notes=notes,
        )
    )


def natural_key(name: str) -> list:
    """``vgg11`` before ``vgg13`` before ``vgg16`` (digits compare as numbers, as in timm)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(
    include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> list[ModelInfo]:
    """Registered models whose names match any ``include`` glob and no ``exclude`` glob,
    in natural order (``vgg11`` before ``vgg13`` before ``resnet101``'s neighbours)."""

    def patterns(value) -> list[str]:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else list(value)
        return [canonical_name(v) for v in values]

    names = list(_REGISTRY)
    inc, exc = patterns(include), patterns(exclude)
    if inc:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in inc)]
    if exc:
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
    return [_REGISTRY[n] for n in sorted(names, key=natural_key)]


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance: a swap of two adjacent
    characters counts as one edit, so ``vgg61`` is closest to ``vgg16``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The closest candidates by edit distance; among equals, a candidate with the same
    letters (a typo that swapped them) first, then by difflib's similarity."""
    key = canonical_name(name)
    limit = max(2, len(key) // 3)
    scored = []
    for cand in candidates:
        distance = edit_distance(key, cand)
        if distance <= limit:
            ratio = difflib.SequenceMatcher(None, key, cand).ratio()
            same_letters = sorted(key) == sorted(cand)
            scored.append((distance, not same_letters, -ratio, cand))
    return [entry[-1] for entry in sorted(scored)[:n]]


def get_model_info(name: str) -> ModelInfo:
    key = canonical_name(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = suggest(key, _REGISTRY)
    if close:
        raise SpecError(f"unknown model {name!r}; did you mean {' or '.join(close)}?")
    raise SpecError(f"unknown model {name!r}", hint="list")
