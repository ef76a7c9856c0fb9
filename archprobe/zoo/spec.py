"""Model specs: what a user types on the command line, resolved to something buildable.

Accepted forms:
  * a zoo name (``googlenet``, ``alexnet-d2l``; case, ``_`` and ``-`` interchangeable);
  * ``tv:NAME``   any torchvision classification model;
  * ``timm:NAME`` any timm model;
  * ``path/to/file.py:factory`` or ``package.module:factory``: a callable returning an
    ``nn.Module``. It is passed ``in_channels``/``num_classes`` only when the user gave them
    (and it accepts them); otherwise its own defaults hold. A channel count in the input size
    is simply fed to the model; with no size, the model's first input-consuming layer decides;
  * a live ``nn.Module`` (Python API, :func:`module_spec`): analysed through twins that never
    touch its weights (:mod:`archprobe.zoo.twin`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from archprobe.errors import ArchprobeError, ModelCodeError, SpecError, UsageError, first_line
from archprobe.results import Note
from archprobe.user_code import running_user_code
from archprobe.zoo.registry import ModelInfo, get_model_info, suggest

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

DEFAULT_SIZE = 224
TORCHVISION_CLASSES = 1000  # every torchvision classifier's default head
SIZE_ASSUMED = Note.of("input_size_assumed", height=DEFAULT_SIZE, width=DEFAULT_SIZE)


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: its name, its input shape ``(C, H, W)`` and a way to build it.

    ``input_shape[0]`` is ``None`` where the channel count is to be read off the built model
    (a user factory or module given no size); :class:`archprobe.probe.Probe` settles it.
    ``notes`` say how the input shape was chosen when the user did not give it.
    """

    name: str
    kind: str  # "zoo", "torchvision", "timm", "user" or "module"
    input_shape: tuple[int | None, int, int]
    num_classes: int | None
    factory: Callable[[], "nn.Module"] = field(repr=False, compare=False)
    info: ModelInfo | None = field(default=None, repr=False, compare=False)
    module: "nn.Module | None" = field(default=None, repr=False, compare=False)
    notes: tuple[Note, ...] = ()

    @property
    def in_channels(self) -> int | None:
        return self.input_shape[0]

    def with_input_size(self, height: int, width: int, channels: int | None = None) -> "ModelSpec":
        c = self.input_shape[0] if channels is None else channels
        # the assumed size (and read channels, where channels are given) no longer hold; notes
        # about the model itself still do
        stale = {"input_size_assumed"} | ({"channels_read"} if channels is not None else set())
        return replace(self, input_shape=(c, height, width), notes=tuple(n for n in self.notes if n.code not in stale))

    def build(self, device: str = "meta") -> "nn.Module":
        """Instantiate the model on ``device`` (``"meta"``: no weights allocated), in eval mode.

        A live module is never built: its twin is (:func:`archprobe.zoo.twin.twin`). The factory
        runs as user code (:func:`archprobe.user_code.running_user_code`); an exception in a user
        factory is a one-line ``ModelCodeError``, in a zoo or library builder a ``SpecError``.
        """
        import torch

        with running_user_code(f"building {self.name}"):
            if self.module is not None:
                from archprobe.zoo.twin import twin

                try:
                    return twin(self.module, device).eval()
                except TypeError as exc:
                    raise SpecError(f"{self.name}: {first_line(exc)}") from exc
            try:
                with torch.device(device):
                    model = self.factory()
            except ArchprobeError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure in model code is reported
                if device != "meta":
                    raise self._build_error(exc) from exc
                model = self._build_then_move(device)
        if not isinstance(model, torch.nn.Module):
            raise SpecError(f"{self.name}: the factory returned {type(model).__name__}, not an nn.Module")
        return model.eval()

    def _build_then_move(self, device: str) -> "nn.Module":
        # Some model code reads tensor data while building (impossible on meta, e.g.
        # torchvision's RegNet): build on the CPU and move the module to meta instead.
        try:
            model = self.factory()
        except ArchprobeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._build_error(exc) from exc
        return model.to(device) if hasattr(model, "to") else model

    def _build_error(self, exc: Exception) -> ArchprobeError:
        error = ModelCodeError if self.kind == "user" else SpecError
        return error(f"building {self.name} failed: {first_line(exc)}")


def parse_input_size(text: str | int | None) -> tuple[int | None, int, int] | None:
    """``"224"`` -> (None, 224, 224); ``"3x224x224"`` -> (3, 224, 224); ``"96x128"`` -> (None, 96, 128)."""
    if text is None:
        return None
    raw = str(text).strip().lower().replace("×", "x").replace(",", "x").replace(" ", "")
    parts = raw.split("x") if raw else []
    if not parts or len(parts) > 3 or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
        raise UsageError(f"invalid input size {text!r}: use N, HxW or CxHxW with positive integers",
                         param="input_size")
    values = [int(p) for p in parts]
    if any(v <= 0 for v in values):
        raise UsageError(f"invalid input size {text!r}: sizes must be positive", param="input_size")
    if len(values) == 1:
        return (None, values[0], values[0])
    if len(values) == 2:
        return (None, values[0], values[1])
    return (values[0], values[1], values[2])


def normalise_input_size(value) -> tuple[int | None, int, int] | None:
    """``int``, ``(H, W)``, ``(C, H, W)`` or the command line's text -> ``(C | None, H, W)``."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_input_size(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_input_size(str(value))
    if isinstance(value, (tuple, list)) and len(value) in (2, 3) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return parse_input_size("x".join(map(str, value)))
    raise UsageError(f"{value!r} is not a size: use an int, (H, W) or (C, H, W)", param="input_size")


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise UsageError(f"must be a positive integer, not {value!r}", param=name)


def resolve(
    spec: str,
    *,
    input_size=None,
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> ModelSpec:
    """Resolve a spec string to a ``ModelSpec`` (cheap: nothing is built yet).

    ``in_channels``/``num_classes``: passed to the builder (zoo, torchvision and timm builders
    take both; a user factory only when it accepts them). A channel count in ``input_size``
    builds zoo/library models for that many channels, and is fed as is to user models.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    size = normalise_input_size(input_size)
    if size is not None and size[0] is not None and in_channels is not None and in_channels != size[0]:
        raise UsageError(f"{in_channels} does not match the {size[0]} channels of the input size", param="in_channels")

    text = spec.strip()
    if not text:
        raise SpecError("empty model spec")
    library_channels = in_channels if in_channels is not None else (size[0] if size else None)
    if text.startswith("tv:"):
        base = _torchvision_spec(text[3:], library_channels, num_classes)
    elif text.startswith("timm:"):
        base = _timm_spec(text[5:], library_channels, num_classes)
    elif ":" in text:
        base = _user_spec(text, in_channels, num_classes)
    elif text.endswith(".py"):
        raise SpecError(f"{text} is a Python file: add :factory, the function in it that returns the model "
                        f"(e.g. {text}:build)")
    else:
        base = _zoo_spec(text, library_channels, num_classes)
    if size is not None:
        base = base.with_input_size(size[1], size[2], size[0])
    return base


def module_spec(module: "nn.Module", *, name: str | None = None, input_size=None) -> ModelSpec:
    """A live module as a spec: built as twins (never moved or changed); with no ``input_size``
    the channel count comes from its first input-consuming layer and the size is 224x224."""
    from torch import nn

    if not isinstance(module, nn.Module):
        raise UsageError(f"expected an nn.Module or a model spec string, not {type(module).__name__}")
    size = normalise_input_size(input_size)
    if size is None:
        shape, notes = (None, DEFAULT_SIZE, DEFAULT_SIZE), (SIZE_ASSUMED,)
    else:
        shape, notes = size, ()

    def unbuildable():
        raise AssertionError("a live module is built through its twin")

    return ModelSpec(name or type(module).__name__, "module", shape, None, unbuildable, module=module,
                     notes=notes)


def _zoo_spec(name: str, in_channels, num_classes) -> ModelSpec:
    info = get_model_info(name)
    channels = in_channels or info.in_channels
    classes = num_classes or info.num_classes

    def factory():
        return info.builder(in_channels=channels, num_classes=classes)

    return ModelSpec(
        name=info.name,
        kind="zoo",
        input_shape=(channels, *info.input_shape[1:]),
        num_classes=classes,
        factory=factory,
        info=info,
    )


def _torchvision_spec(name: str, in_channels, num_classes) -> ModelSpec:
    import torchvision

    from archprobe.zoo.library import build_torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    key = name.strip().lower().replace("-", "_")
    if key not in available:
        close = suggest(key.replace("_", "-"), [a.replace("_", "-") for a in available])
        hint = f"; did you mean {' or '.join('tv:' + c.replace('-', '_') for c in close)}?" if close else ""
        raise SpecError(f"unknown torchvision classification model {name!r}{hint}")
    weights = torchvision.models.get_model_weights(key)
    crop = DEFAULT_SIZE
    try:
        crop = int(weights.DEFAULT.transforms().crop_size[0])
    except Exception:  # noqa: BLE001 - some weight enums have no crop size
        pass
    channels = in_channels or 3
    classes = num_classes or TORCHVISION_CLASSES
    kwargs = {"init_weights": True} if key in ("googlenet", "inception_v3") else {}
    if key.startswith("vit_"):
        # a ViT's position embeddings fix its input size; its default weights may be for a larger
        # crop than the builder's default (vit_h_14: 518), so build it for the crop it is fed
        kwargs["image_size"] = crop

    def factory():
        return build_torchvision(key, in_channels=channels, num_classes=classes, **kwargs)

    return ModelSpec(f"tv:{key}", "torchvision", (channels, crop, crop), classes, factory,
                     notes=_head_notes("torchvision", classes, TORCHVISION_CLASSES))


def _timm_spec(name: str, in_channels, num_classes) -> ModelSpec:
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is a dependency
        raise SpecError("timm is not installed: pip install timm") from exc
    from archprobe.zoo.library import build_timm

    key = name.strip()
    if not timm.is_model(key):
        close = suggest(key, timm.list_models())
        hint = f"; did you mean {' or '.join('timm:' + c for c in close)}?" if close else ""
        raise SpecError(f"unknown timm model {name!r}{hint}")
    cfg = timm.get_pretrained_cfg(key)
    shape = tuple(cfg.input_size) if cfg is not None else (3, DEFAULT_SIZE, DEFAULT_SIZE)
    channels = in_channels or 3
    # timm builds the head its pretrained config names (tiny_vit_5m_224: 21,841 classes; 0 for a
    # feature extractor without one), so that is the default here too
    default = getattr(cfg, "num_classes", None)
    classes = num_classes or default

    def factory():
        return build_timm(key, in_channels=channels, num_classes=classes)

    return ModelSpec(f"timm:{key}", "timm", (channels, shape[1], shape[2]), classes, factory,
                     notes=_head_notes("timm", classes, default))


def _head_notes(library: str, classes: int | None, default: int | None) -> tuple[Note, ...]:
    """A note where the head built differs from the one the library builds by default."""
    if default is None or classes == default:
        return ()
    return (Note.of("head_differs", library=library, classes=classes, default=default),)


def _user_spec(text: str, in_channels, num_classes) -> ModelSpec:
    location, _, attr = text.rpartition(":")
    if not location or not attr.isidentifier():
        raise SpecError(f"invalid model spec {text!r}: use path/to/file.py:factory or package.module:factory")
    if location.endswith(".py") or "/" in location or "\\" in location:
        module = _load_file(Path(location))
    else:
        module = _import_module(location)
    factory_fn = getattr(module, attr, None)
    if factory_fn is None:
        names = [n for n in vars(module) if not n.startswith("_")]
        close = suggest(attr, names)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise SpecError(f"{location} has no attribute {attr!r}{hint}")
    if not callable(factory_fn):
        raise SpecError(f"{location}:{attr} is not callable")

    kwargs = {}
    accepted = _accepted_kwargs(factory_fn)
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if value is None:
            continue
        if key not in accepted:
            raise UsageError(f"{location}:{attr} does not take this argument", param=key)
        kwargs[key] = value

    def factory():
        return factory_fn(**kwargs)

    return ModelSpec(text, "user", (in_channels, DEFAULT_SIZE, DEFAULT_SIZE), num_classes, factory,
                     notes=(SIZE_ASSUMED,))


def _accepted_kwargs(fn) -> set[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return {"in_channels", "num_classes"}
    return {p.name for p in params}


def _load_file(path: Path):
    if not path.is_file():
        raise SpecError(f"no such file: {path}")
    module_name = "archprobe_user_" + re.sub(r"\W", "_", str(path.resolve()))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered like an import (dataclasses and pickling look modules up by name), and
    # the file may import its siblings.
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        with running_user_code(f"importing {path}"):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise SpecError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except ModelCodeError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as exc:  # noqa: BLE001
        sys.modules.pop(module_name, None)
        raise ModelCodeError(f"importing {path} failed: {first_line(exc)}") from exc
    finally:
        sys.path.pop(0)
    return module


def _import_module(location: str):
    """``package.module`` imported as user code: a module that does not exist is a bad spec; an
    error its code raises while importing is that code's."""
    try:
        with running_user_code(f"importing {location}"):
            return importlib.import_module(location)
    except ModelCodeError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and (location == exc.name or location.startswith(exc.name + ".")):
            raise SpecError(f"cannot import module {location!r}: {first_line(exc)}") from exc
        raise ModelCodeError(f"importing {location} failed: {first_line(exc)}") from exc
    except SyntaxError as exc:
        raise SpecError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:  # noqa: BLE001
        raise ModelCodeError(f"importing {location} failed: {first_line(exc)}") from exc

