"""From what a user names to resolved specs: globs over the zoo, repeats dropped, every model
resolved up front (a typo fails before any work starts), a model settled to a data set.

A model is a spec string (``"googlenet"``, ``"tv:resnet50"``, ``"timm:convnext_tiny"``,
``"path/file.py:factory"``), a resolved :class:`ModelSpec`, or a live ``nn.Module`` (analysed
through twins, never touched).
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, Union

from archprobe.errors import SpecError, UsageError
from archprobe.results import ZooEntry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from archprobe.zoo.spec import ModelSpec

ModelLike = Union[str, "nn.Module", "ModelSpec"]


GLOB_CHARS = "*?["
# the libraries whose names globs expand over: prefix -> what their names are
LIBRARIES = {"tv": "torchvision classification model", "timm": "timm model"}


def is_glob(text: str) -> bool:
    return any(ch in text for ch in GLOB_CHARS)


def library_names(prefix: str) -> list[str]:
    """Every model name a library knows, offline: torchvision's classification models
    (``torchvision.models.list_models``) or timm's (``timm.list_models``)."""
    if prefix == "tv":
        import torchvision

        return list(torchvision.models.list_models(module=torchvision.models))
    import timm

    return list(timm.list_models())


def _fold(text: str) -> str:
    """Case, ``_`` and ``-`` are interchangeable in names and in globs."""
    return text.strip().lower().replace("_", "-")


def _library_of(spec: str) -> tuple[str | None, str]:
    """``"tv:resnet*"`` -> ``("tv", "resnet*")``; a zoo name or user spec -> ``(None, spec)``."""
    prefix, sep, name = spec.strip().partition(":")
    return (prefix, name) if sep and prefix in LIBRARIES else (None, spec.strip())


def spec_key(spec: str) -> str:
    """The spelling-free identity of a spec string, for dropping repeats."""
    from archprobe.zoo.registry import canonical_name

    prefix, name = _library_of(spec)
    if prefix == "tv":
        return "tv:" + name.strip().lower().replace("-", "_")
    if prefix == "timm" or ":" in spec:
        return spec.strip()
    return canonical_name(spec)


def excluded(spec: str, patterns: Sequence[str]) -> bool:
    """Whether ``spec`` matches one of the ``exclude`` globs: a glob with a library prefix
    (``tv:vit*``) matches that library's names; one without (``vit*``, ``*-d2l``) matches the
    name of a zoo or library model (``tv:vit_b_16`` too) and the whole text of a user spec."""
    prefix, name = _library_of(spec)
    for pattern in patterns:
        if ":" in pattern:
            if fnmatch.fnmatchcase(_fold(spec), _fold(pattern)):
                return True
        elif fnmatch.fnmatchcase(_fold(name), _fold(pattern)):
            return True
    return False


def expand(models: Iterable[str], exclude: str | Iterable[str] | None = None, *,
           names: Callable[[str], list[str]] = library_names) -> list[str]:
    """The one expansion of what a user names into spec strings, used by every command and door.

    Zoo globs (``'inception*'``, ``'*'``) expand over the zoo; library globs (``'tv:*'``,
    ``'tv:resnet*'``, ``'timm:convnext*'``) over the library's own list (``names(prefix)``;
    torchvision's classification models, timm's models; offline), each glob's matches in natural
    order (``resnet18`` before ``resnet101``); other specs are kept as given, in order. Models
    matching an ``exclude`` glob (see :func:`excluded`) are left out; repeated names (in any
    spelling) are kept once.

    Raises:
        SpecError: a glob matches no model, or ``exclude`` leaves none.
    """
    given = list(models)
    return _leave_out_and_once(_expand_globs(given, names), given, exclude)


def _expand_globs(models: list[ModelLike], names: Callable[[str], list[str]] = library_names) -> list[ModelLike]:
    """Each glob among ``models`` replaced by its matches in natural order; the rest as given."""
    from archprobe.zoo.registry import list_models, natural_key

    expanded: list[ModelLike] = []
    for model in models:
        prefix, name = _library_of(model) if isinstance(model, str) else (None, "")
        if prefix is not None and is_glob(name):
            matches = [f"{prefix}:{n}" for n in sorted(names(prefix), key=lambda n: natural_key(_fold(n)))
                       if fnmatch.fnmatchcase(_fold(n), _fold(name))]
            if not matches:
                raise SpecError(f"no {LIBRARIES[prefix]} matches {model!r}")
            expanded.extend(matches)
        elif isinstance(model, str) and ":" not in model and is_glob(model):
            matches = [info.name for info in list_models(model)]
            if not matches:
                raise SpecError(f"no zoo model matches {model!r}", hint="list")
            expanded.extend(matches)
        else:
            expanded.append(model)
    return expanded


def _leave_out_and_once(items: list[ModelLike], given: list[ModelLike],
                        exclude: str | Iterable[str] | None) -> list[ModelLike]:
    """``items`` less the spec strings matching ``exclude``, each spec string once (in any
    spelling, the first kept); specs and modules stay as given."""
    patterns = [exclude] if isinstance(exclude, str) else list(exclude or ())
    kept = [m for m in items if not (patterns and isinstance(m, str) and excluded(m, patterns))]
    if given and not kept:
        named = " ".join(m if isinstance(m, str) else type(m).__name__ for m in given)
        raise SpecError(f"every model of {named!r} is excluded by {' '.join(patterns)!r}")
    seen: set[str] = set()
    once: list[ModelLike] = []
    for model in kept:
        if isinstance(model, str):
            if spec_key(model) in seen:
                continue
            seen.add(spec_key(model))
        once.append(model)
    return once


def expand_all(models: Iterable[ModelLike], exclude: str | Iterable[str] | None = None) -> list[ModelLike]:
    """:func:`expand` over a mix of spec strings, specs and modules: globs expand, ``exclude``
    leaves spec strings out, repeated spec strings are kept once; specs and modules stay as given,
    in their places."""
    given = list(models)
    return _leave_out_and_once(_expand_globs(given), given, exclude)


def model_list(models: "ModelLike | Iterable[ModelLike]") -> list[ModelLike]:
    """One model or several as a list (an ``nn.Sequential`` is one model, not its layers)."""
    from torch import nn

    from archprobe.zoo.spec import ModelSpec

    return [models] if isinstance(models, (str, ModelSpec, nn.Module)) else list(models)


def as_spec(model: ModelLike, *, input_size=None, in_channels: int | None = None,
            num_classes: int | None = None, name: str | None = None) -> "ModelSpec":
    """Resolve ``model`` to a spec (nothing is built yet for strings and specs); ``input_size``
    as :mod:`archprobe.zoo.sizes` reads it (a size, or this model's of ``MODEL=SIZE`` entries)."""
    from archprobe.zoo.sizes import size_for
    from archprobe.zoo.spec import ModelSpec, module_spec, normalise_input_size, resolve

    input_size = size_for(model, input_size)
    if isinstance(model, ModelSpec):
        size = normalise_input_size(input_size)
        return model.with_input_size(size[1], size[2], size[0]) if size else model
    if isinstance(model, str):
        return resolve(model, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    return module_spec(model, name=name, input_size=input_size)


def resolve_all(models: Iterable[ModelLike], exclude: str | Iterable[str] | None = None,
                **options) -> list["ModelSpec"]:
    """Every model resolved up front, so a typo fails before any work starts; globs expand
    (zoo and library), ``exclude`` globs leave models out and repeated names are kept once."""
    from archprobe.zoo.sizes import sizes_for

    items = expand_all(models, exclude)
    sizes = sizes_for(items, options.pop("input_size", None))  # MODEL=SIZE: each model its own
    return [as_spec(m, input_size=size, **options) for m, size in zip(items, sizes)]


def data_spec(model: ModelLike, channels: int, classes: int, side: int | None = None) -> "ModelSpec":
    """``model`` built for a data set: zoo and library models take its channels and classes; a
    user factory takes those of them it accepts (its own defaults hold otherwise)."""
    size = (channels, side, side) if side else None
    if not isinstance(model, str):
        return as_spec(model, input_size=size)
    options = {"in_channels": channels, "num_classes": classes}
    while True:
        try:
            return as_spec(model, input_size=size, **options)
        except UsageError as exc:
            if exc.param not in options:
                raise
            del options[exc.param]


def check_sendable(models: Iterable[ModelLike]) -> None:
    """A ``UsageError`` unless every model is a spec string, which other processes can resolve."""
    if not all(isinstance(m, str) for m in models):
        raise UsageError("a live module or a resolved spec cannot be sent to other processes: give the model as a "
                         "spec string (a zoo name, tv:NAME, timm:NAME or file.py:factory)", param="model")


def zoo_entries(pattern: str | Sequence[str] | None = None,
                exclude: str | Sequence[str] | None = None) -> list[ZooEntry]:
    """The zoo entries whose names match ``pattern`` (globs) and not ``exclude``, in natural order;
    a library pattern (``tv:resnet*``, ``timm:convnext*``) gives the entries of the library's
    models it matches (see :func:`expand`), after the zoo's."""
    from archprobe.zoo.registry import list_models

    patterns = [pattern] if isinstance(pattern, str) else list(pattern or ())
    library = [p for p in patterns if _library_of(p)[0] is not None]
    zoo = [p for p in patterns if p not in library]
    entries = [
        ZooEntry(name=i.name, family=i.family, variant=i.variant, input_shape=i.input_shape,
                 num_classes=i.num_classes, source=i.source, paper=i.paper, year=i.year, notes=i.notes)
        for i in (list_models(zoo or None, exclude) if zoo or not library else [])
    ]
    if library:
        excludes = [exclude] if isinstance(exclude, str) else list(exclude or ())
        kept = [m for m in expand(library) if not excluded(m, excludes)]
        entries.extend(describe(as_spec(m)) for m in kept)
    return entries


def describe(spec: "ModelSpec") -> ZooEntry:
    """The zoo entry of any model: the registry's for zoo models, what the spec knows otherwise."""
    if spec.info is not None:
        (entry,) = zoo_entries(spec.info.name)
        return entry
    return ZooEntry(name=spec.name, family="-", variant="-", input_shape=spec.input_shape,
                    num_classes=spec.num_classes, source=spec.kind)
