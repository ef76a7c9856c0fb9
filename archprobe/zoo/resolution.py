"""From what a user names to resolved specs: globs over the zoo, repeats dropped, every model
resolved up front (a typo fails before any work starts), a model settled to a data set.

A model is a spec string (``"googlenet"``, ``"tv:resnet50"``, ``"timm:convnext_tiny"``,
``"path/file.py:factory"``), a resolved :class:`ModelSpec`, or a live ``nn.Module`` (analysed
through twins, never touched).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence, Union

from archprobe.errors import SpecError, UsageError
from archprobe.results import ZooEntry

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from archprobe.zoo.spec import ModelSpec

ModelLike = Union[str, "nn.Module", "ModelSpec"]


def expand(models: Iterable[str]) -> list[str]:
    """Zoo globs (``'inception*'``, ``'*'``) expand to the matching zoo names, in zoo order;
    repeated names (in any spelling) are kept once."""
    from archprobe.zoo.registry import canonical_name, list_models

    expanded: list[str] = []
    for model in models:
        if ":" not in model and any(ch in model for ch in "*?["):
            names = [info.name for info in list_models(model)]
            if not names:
                raise SpecError(f"no zoo model matches {model!r}", hint="list")
            expanded.extend(names)
        else:
            expanded.append(model)
    seen: dict[str, str] = {}
    for model in expanded:
        key = canonical_name(model) if ":" not in model else model.strip()
        seen.setdefault(key, model)
    return list(seen.values())


def expand_all(models: Iterable[ModelLike]) -> list[ModelLike]:
    """Zoo globs in spec strings expanded; repeated names kept once (specs and modules as given)."""
    items: list[ModelLike] = []
    for model in models:
        items.extend(expand([model]) if isinstance(model, str) else [model])
    if all(isinstance(m, str) for m in items):
        items = expand(items)  # drops repeats across arguments too ("alexnet ALEXNET")
    return items


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


def resolve_all(models: Iterable[ModelLike], **options) -> list["ModelSpec"]:
    """Every model resolved up front, so a typo fails before any work starts; zoo globs expand
    and repeated names are kept once."""
    from archprobe.zoo.sizes import sizes_for

    items = expand_all(models)
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
    """The zoo entries whose names match ``pattern`` (globs) and not ``exclude``, in natural order."""
    from archprobe.zoo.registry import list_models

    return [
        ZooEntry(name=i.name, family=i.family, variant=i.variant, input_shape=i.input_shape,
                 num_classes=i.num_classes, source=i.source, paper=i.paper, year=i.year, notes=i.notes)
        for i in list_models(pattern, exclude)
    ]


def describe(spec: "ModelSpec") -> ZooEntry:
    """The zoo entry of any model: the registry's for zoo models, what the spec knows otherwise."""
    if spec.info is not None:
        (entry,) = zoo_entries(spec.info.name)
        return entry
    return ZooEntry(name=spec.name, family="-", variant="-", input_shape=spec.input_shape,
                    num_classes=spec.num_classes, source=spec.kind)
