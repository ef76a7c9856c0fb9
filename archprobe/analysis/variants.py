"""ImageNet models next to their variants: the Dive-into-DL version (``X-d2l``: 1 channel, 10
classes) or the paper's own layout where the library's model departs from it (``X-paper``)."""

from __future__ import annotations

from typing import Sequence

from archprobe.results import ModelCounts, VariantPair

D2L_SUFFIX = "-d2l"
PAPER_SUFFIX = "-paper"  # a paper's own layout of a model the libraries build differently


def variant_pairs(counts: Sequence[ModelCounts], families: dict[str, str]) -> list[VariantPair]:
    """Pair each ``X-d2l`` model with ``X``, else with the first ImageNet model of its family;
    and each ``X-paper`` model (the paper's own layout) with the library's ``X``."""
    by_name = {c.model: c for c in counts}
    pairs = []
    for c in counts:
        if c.model.endswith(D2L_SUFFIX):
            kind, base = "d2l", c.model[: -len(D2L_SUFFIX)]
            partner = by_name.get(base) or next(
                (o for o in counts
                 if families.get(o.model) == families.get(c.model) and not o.model.endswith(D2L_SUFFIX)),
                None,
            )
        elif c.model.endswith(PAPER_SUFFIX):
            kind, partner = "paper", by_name.get(c.model[: -len(PAPER_SUFFIX)])
        else:
            continue
        if partner is None:
            continue
        pairs.append(
            VariantPair(
                family=families.get(c.model, ""),
                imagenet=partner.model,
                imagenet_input=partner.input_shape[1:],
                imagenet_params=partner.params,
                imagenet_macs=partner.macs,
                d2l=c.model,
                d2l_input=c.input_shape[1:],
                d2l_params=c.params,
                d2l_macs=c.macs,
                params_ratio=c.params / partner.params if partner.params else 0.0,
                kind=kind,
            )
        )
    return pairs
