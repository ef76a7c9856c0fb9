"""The run context: one built model and the setting it is analysed or measured in.

A :class:`Probe` carries the resolved spec, the model built once (on the meta device for
static analysis, on a real device for measurements), the input shape with its batch, the mode
and the device. Every analyzer and the runtime take a probe; the batch-prefixed input shape is
built here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from math import prod
from typing import TYPE_CHECKING

from archprobe.errors import ModelCodeError, SpecError, UsageError
from archprobe.results import Note

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from archprobe.zoo.spec import ModelSpec


class Mode(str, Enum):
    """Evaluation (inference) or training: BatchNorm statistics, dropout and aux heads differ."""

    EVAL = "eval"
    TRAIN = "train"

    @classmethod
    def of(cls, value: "Mode | str | bool") -> "Mode":
        """``True``/``"train"`` -> TRAIN; ``False``/``"eval"``/``"inference"`` -> EVAL."""
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            return cls.TRAIN if value else cls.EVAL
        text = str(value).strip().lower()
        if text in ("train", "training"):
            return cls.TRAIN
        if text in ("eval", "inference", "evaluation"):
            return cls.EVAL
        raise UsageError(f"unknown mode {value!r}: use eval (inference) or train", param="mode")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Probe:
    """A model built once, with the input shape, batch size, mode and device it runs in."""

    spec: "ModelSpec"
    model: "nn.Module"
    batch_size: int = 1
    mode: Mode = Mode.EVAL
    device: str = "meta"

    @classmethod
    def build(
        cls,
        spec: "ModelSpec",
        *,
        batch_size: int = 1,
        mode: "Mode | str | bool" = Mode.EVAL,
        device: str = "meta",
    ) -> "Probe":
        """Build ``spec`` on ``device`` and settle its input shape (channels read off the model
        where the spec leaves them open)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise UsageError(f"must be a positive integer, not {batch_size!r}", param="batch_size")
        model = spec.build(device)
        spec = _settle_channels(spec, model, str(device))
        if batch_size * prod(spec.input_shape) >= 2**63:  # torch's sizes are int64
            shape = "x".join(map(str, (batch_size, *spec.input_shape)))
            raise UsageError(f"an input of {shape} has more elements than a tensor can hold; "
                             "use a smaller batch or input size")
        return cls(spec=spec, model=model, batch_size=batch_size, mode=Mode.of(mode), device=str(device))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One example: ``(C, H, W)``."""
        return self.spec.input_shape  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The batch: ``(N, C, H, W)``."""
        return (self.batch_size, *self.input_shape)

    @property
    def train(self) -> bool:
        return self.mode is Mode.TRAIN

    @property
    def notes(self) -> tuple[Note, ...]:
        """How the input shape was chosen, where the user did not give it."""
        return self.spec.notes

    @property
    def dtype(self) -> "torch.dtype":
        """The model's own dtype (:func:`model_dtype`): inputs are made in it, bytes counted in it."""
        return model_dtype(self.model)

    def input(self, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """An uninitialised input batch on the probe's device (meta: no memory), in ``dtype``
        (default: the model's)."""
        import torch

        return torch.empty(self.shape, device=self.device, dtype=dtype or self.dtype)

    def with_setting(self, *, batch_size: int | None = None, mode: "Mode | str | bool | None" = None) -> "Probe":
        """The same built model in another batch size or mode."""
        return replace(
            self,
            batch_size=self.batch_size if batch_size is None else batch_size,
            mode=self.mode if mode is None else Mode.of(mode),
        )

    def at_size(self, height: int, width: int) -> "Probe":
        """The same built model fed another spatial size (the channel count stays)."""
        return replace(self, spec=self.spec.with_input_size(height, width))


def model_dtype(model: "nn.Module") -> "torch.dtype":
    """The dtype a model computes in: that of its first floating-point parameter or buffer
    (``model.double()``: float64), float32 for a model with none."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def dtype_name(dtype: "torch.dtype") -> str:
    """``torch.float64`` -> ``"float64"``."""
    return str(dtype).removeprefix("torch.")


def _settle_channels(spec: "ModelSpec", model: "nn.Module", device: str) -> "ModelSpec":
    if spec.input_shape[0] is not None:
        return spec
    channels, path, type_name = input_channels(model, device)
    note = Note.of("channels_read", channels=channels, layer=path, type=type_name)
    return replace(spec, input_shape=(channels, *spec.input_shape[1:]), notes=(*spec.notes, note))


class _Found(Exception):
    def __init__(self, channels: int, where: tuple[str, str]):
        self.channels, self.where = channels, where


def input_channels(model: "nn.Module", device: str = "meta") -> tuple[int, str, str]:
    """The channel count of the first layer that consumes the input, and that layer's path
    ("" for the model itself) and type.

    Runs one forward with module pre-hooks on ``device`` (the model's) and stops before the
    first convolution or normalisation layer called runs; where the forward fails before reaching one, the first such
    layer in registration order answers.
    """
    import torch

    from archprobe.user_code import running_user_code

    names = {id(m): n for n, m in model.named_modules()}

    def channels_of(module) -> int | None:
        for attr in ("in_channels", "num_features", "num_channels"):
            value = getattr(module, attr, None)
            if isinstance(value, int):
                return value
        return None

    def where(module) -> tuple[str, str]:
        return names.get(id(module), ""), type(module).__name__

    leaves = [m for m in model.modules() if channels_of(m) is not None]
    if not leaves:
        raise SpecError("cannot tell the model's input channels (no convolution or normalisation layer);"
                        " give the input size as CxHxW")
    guess = channels_of(leaves[0])

    def pre_hook(module, _inputs):
        raise _Found(channels_of(module), where(module))

    handles = [m.register_forward_pre_hook(pre_hook) for m in leaves]
    first = (guess, *where(leaves[0]))
    was_training = model.training
    try:
        with torch.no_grad(), running_user_code(f"forward of {type(model).__name__}"):
            model.eval()
            model(torch.empty((1, guess, 224, 224), device=device, dtype=model_dtype(model)))
    except _Found as found:
        first = (found.channels, *found.where)
    except ModelCodeError:
        raise
    except Exception:  # noqa: BLE001 - the registration order answers instead
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return first
