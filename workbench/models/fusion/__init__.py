"""Fusion heads: encoded images and texts → match scores.

    base        the contract (`FusionData`, `PairSet`, `FusionHead`) and the registry
    training    shared training options (`TrainOptions`), the fit template, the normaliser and the training loop
    embedding   joint-space heads: cosine, contrastive, cca
    pair        pair scorers over vectors: concat_mlp, multitask, attribute_tags
    token       pair scorers over tokens: cross_attention, soft_attention_cosine, attention_fusion
    late        late_fusion over the scores of registered sub-heads

Imports point one way (base ← training ← heads ← this package); the built-ins are registered here, on import.
"""

from __future__ import annotations

from workbench.models.fusion.base import (
    Device,
    FusionData,
    FusionHead,
    FusionSpec,
    PairSet,
    PairTensors,
    ProgressFn,
    as_pair_index,
    create_fusion_head,
    get_fusion_class,
    get_fusion_spec,
    list_fusion_heads,
    register_fusion_head,
)
from workbench.models.fusion.embedding import CCAHead, ContrastiveHead, CosineHead, info_nce
from workbench.models.fusion.late import LateFusionHead
from workbench.models.fusion.pair import AttributeTagsHead, ConcatMLPHead, MultitaskHead
from workbench.models.fusion.token import AttentionFusionHead, CrossAttentionHead, SoftAttentionCosineHead
from workbench.models.fusion.training import FitContext, TrainedHead, TrainOptions

BUILTIN_HEADS: tuple[type[FusionHead], ...] = (
    CosineHead,
    ContrastiveHead,
    CCAHead,
    ConcatMLPHead,
    MultitaskHead,
    AttributeTagsHead,
    CrossAttentionHead,
    SoftAttentionCosineHead,
    AttentionFusionHead,
    LateFusionHead,
)
for _head in BUILTIN_HEADS:
    register_fusion_head(_head)

__all__ = [
    "BUILTIN_HEADS",
    "AttentionFusionHead",
    "AttributeTagsHead",
    "CCAHead",
    "ConcatMLPHead",
    "ContrastiveHead",
    "CosineHead",
    "CrossAttentionHead",
    "Device",
    "FitContext",
    "FusionData",
    "FusionHead",
    "FusionSpec",
    "LateFusionHead",
    "MultitaskHead",
    "PairSet",
    "PairTensors",
    "ProgressFn",
    "SoftAttentionCosineHead",
    "TrainOptions",
    "TrainedHead",
    "as_pair_index",
    "create_fusion_head",
    "get_fusion_class",
    "get_fusion_spec",
    "info_nce",
    "list_fusion_heads",
    "register_fusion_head",
]
