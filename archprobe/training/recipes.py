"""Each model's default training recipe, where it comes from, and the user's overrides.

The Dive-into-DL models train with the book's recipe (the values, their sources and the
book's results sit next to the d2l zoo entries, in :mod:`archprobe.zoo.book`):

* Dive-into-DL-PyTorch (tangshusen.me, the PyTorch port of the book's first edition; seed 002
  is its chapter 5): ``train_ch5`` with Adam, cross-entropy and PyTorch's default
  initialisation; images scaled to [0, 1] by ``ToTensor`` and resized by ``Resize``. Seed 002's
  own text states LeNet's optimizer and learning rate (Adam, 0.001); its code for the other
  sections is elided there, and the values below are those of the same book's published
  sections 5.5-5.12 (``batch_size``, ``resize``, ``lr, num_epochs``).
* d2l.ai (Dive into Deep Learning 2nd edition, PyTorch), section 8.4 GoogLeNet, whose results
  seed 000 reports: ``train_ch6`` with minibatch SGD (no momentum), cross-entropy and
  ``xavier_uniform_`` on every ``Conv2d``/``Linear`` weight; ``lr, num_epochs, batch_size =
  0.1, 10, 128`` and ``resize=96``. Both GoogLeNet variants use it so that they compare with
  seed 000's numbers (0.888 and 0.904 test accuracy). Dive-into-DL-PyTorch's own GoogLeNet
  section used Adam, lr 0.001, batch 128, resize 96 for 5 epochs.

Every other model (ImageNet zoo entries, torchvision, timm and user models) gets archprobe's
default, labelled as such: SGD with momentum 0.9 and weight decay 5e-4 (the AlexNet and VGG
papers' optimizer) at lr 0.01, batch 128, 10 epochs, resized to the model's default input side
(user models: the data set's own size).
"""

from __future__ import annotations

import math

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from archprobe.errors import UsageError
from archprobe.results import Recipe
from archprobe.zoo.book import ARCHPROBE_DEFAULT, BOOK_RECIPES
from archprobe.runtime.precision import check_dtype
from archprobe.runtime.step import check_optimizer

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.zoo.spec import ModelSpec

INITS = ("default", "xavier")

DEFAULT = dict(optimizer="sgd", lr=0.01, batch_size=128, epochs=10, momentum=0.9, weight_decay=5e-4)
OVERRIDABLE = tuple(f.name for f in fields(Recipe) if f.name not in ("model", "source", "overrides"))


def default_recipe(spec: "ModelSpec") -> Recipe:
    """The book's recipe for a Dive-into-DL zoo model, archprobe's default for any other."""
    name = spec.info.name if spec.info is not None else spec.name
    if name in BOOK_RECIPES:
        optimizer, lr, batch, epochs, resize, init, source = BOOK_RECIPES[name]
        return Recipe(model=spec.name, optimizer=optimizer, lr=lr, batch_size=batch, epochs=epochs,
                      resize=resize, init=init, source=source)
    # A user factory's 224x224 is a guess, not its size: it trains at the data set's own size.
    resize = None if spec.kind in ("user", "module") else spec.input_shape[1]
    return Recipe(model=spec.name, resize=resize, source=ARCHPROBE_DEFAULT, **DEFAULT)


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """``recipe`` with every override that is not None applied and recorded, then checked."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"not recipe fields: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("optimizer") == "adam" and "momentum" not in given:
        given["momentum"] = 0.0  # a book SGD recipe's momentum does not carry over to Adam
    changed = tuple(k for k, v in given.items() if getattr(recipe, k) != v)
    result = replace(recipe, **given, overrides=tuple(dict.fromkeys(recipe.overrides + changed)))
    check_recipe(result)
    return result


def check_recipe(recipe: Recipe) -> None:
    """Raise a :class:`UsageError` (naming the field) for a value no training can use."""
    check_optimizer(recipe.optimizer)
    if recipe.init not in INITS:
        raise UsageError(f"unknown initialisation {recipe.init!r}: use {', '.join(INITS)}", param="init")
    check_dtype(recipe.dtype)
    for name in ("batch_size", "epochs"):
        value = getattr(recipe, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UsageError(f"must be a positive integer, not {value!r}", param=name)
    if recipe.resize is not None and (isinstance(recipe.resize, bool) or recipe.resize <= 0):
        raise UsageError(f"must be a positive integer, not {recipe.resize!r}", param="resize")
    for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
        if not math.isfinite(getattr(recipe, name)):  # inf or nan would train to nan, or not at all
            raise UsageError(f"must be a finite number, not {getattr(recipe, name)}", param=name)
    if not 0 <= recipe.seed < 2**64:
        raise UsageError(f"must be in [0, 2**64), torch's seed range, not {recipe.seed}", param="seed")
    if not recipe.lr > 0:
        raise UsageError(f"must be positive, not {recipe.lr}", param="lr")
    if recipe.momentum < 0 or recipe.weight_decay < 0:
        raise UsageError("must not be negative", param="momentum" if recipe.momentum < 0 else "weight_decay")
    if recipe.momentum and recipe.optimizer != "sgd":
        raise UsageError(f"momentum applies to SGD; {recipe.optimizer} has its own moment estimates",
                         param="momentum")
    if not 0 <= recipe.label_smoothing < 1:
        raise UsageError(f"must be in [0, 1), not {recipe.label_smoothing}", param="label_smoothing")
