"""Zoo entries built by torchvision or timm: their counts are the libraries' own.

Parameter counts equal torchvision's ``weights.meta["num_params"]`` and timm's counts.
"""

from __future__ import annotations

from functools import partial

from archprobe.zoo import papers
from archprobe.zoo.registry import register_model


def build_torchvision(name: str, in_channels: int = 3, num_classes: int = 1000, **kwargs):
    import torchvision

    from archprobe.zoo.adapt import replace_first_conv

    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        if kwargs.get("transform_input"):
            raise ValueError(f"{name} with transform_input needs 3 input channels")
        replace_first_conv(model, in_channels)
    return model


def build_timm(name: str, in_channels: int = 3, num_classes: int | None = None):
    """``num_classes=None``: the head timm builds by default (its pretrained config's)."""
    import timm

    head = {} if num_classes is None else {"num_classes": num_classes}
    return timm.create_model(name, pretrained=False, in_chans=in_channels, **head)


def _tv(name, family, paper, shape=(3, 224, 224), notes="", **kwargs) -> None:
    builder = partial(build_torchvision, name.replace("-", "_"), **kwargs)
    register_model(name, family=family, variant="imagenet", paper=paper, input_shape=shape,
                   num_classes=1000, source="torchvision", builder=builder, notes=notes)


def _timm(name, timm_name, family, paper, shape=(3, 299, 299)) -> None:
    register_model(name, family=family, variant="imagenet", paper=paper, input_shape=shape,
                   num_classes=1000, source="timm", builder=partial(build_timm, timm_name))


_tv("alexnet", "alexnet", papers.ALEXNET, notes="torchvision's one-tower variant (64-192-384-256-256)")
for _depth in (11, 13, 16, 19):
    _tv(f"vgg{_depth}", "vgg", papers.VGG)
    _tv(f"vgg{_depth}-bn", "vgg", papers.VGG)
_tv(
    "googlenet",
    "googlenet",
    papers.GOOGLENET,
    notes="Inception v1 with BatchNorm (torchvision); eval graph, aux heads not built",
    aux_logits=False,
    init_weights=True,
)
_tv(
    "inception-v3",
    "inception",
    papers.INCEPTION_V3,
    shape=(3, 299, 299),
    notes="aux head built (as torchvision's weights); it runs only in training mode",
    aux_logits=True,
    init_weights=True,
)
_timm("inception-v4", "inception_v4", "inception", papers.INCEPTION_V4)
_timm("inception-resnet-v2", "inception_resnet_v2", "inception-resnet", papers.INCEPTION_V4)
for _depth in (18, 34, 50, 101, 152):
    _tv(f"resnet{_depth}", "resnet", papers.RESNET)
for _depth in (121, 161, 169, 201):
    _tv(f"densenet{_depth}", "densenet", papers.DENSENET)


def published_accuracy(spec: str) -> tuple[str, float] | None:
    """``(weights, acc@1)`` of a ``tv:NAME`` spec: torchvision's published ImageNet-1K top-1 of
    the model's default weights, as a fraction, and the weights' name
    (``ResNet50_Weights.IMAGENET1K_V2``); read from the weights' metadata, nothing downloaded.
    None for other specs and for weights without an ImageNet-1K figure."""
    if not spec.startswith("tv:"):
        return None
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(spec[3:]).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None
    acc1 = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return (str(weights), round(acc1 / 100, 8)) if acc1 is not None else None
