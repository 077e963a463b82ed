"""Explanations of a pair's score: where in the photo and which words drove it, and how faithful that is.

    base          the contract (`Explanation`, `SideExplanation`, `PairContext`) and the one explainer registry
    image         grad_cam, attention_relevancy (Chefer et al. 2021), colour-histogram and keyword maps, head attention
    text          integrated_gradients (captum), tfidf_terms, keyword_terms, head attention
    words         attributions shown by word (jieba for Chinese)
    faithfulness  deletion curves against random deletion
    render        the overlay PNG and what the app shows

Explanations run on a restored run (`workbench.run.restore.restore_run_models`); the built-in explainers register on
import of this package.
"""

from __future__ import annotations

from workbench.explain import image as _image  # noqa: F401  (registers the image explainers)
from workbench.explain import text as _text  # noqa: F401  (registers the text explainers)
from workbench.explain.base import (
    Explainer,
    Explanation,
    ExplanationUnavailable,
    PairContext,
    SideExplanation,
    applicable,
    explain_items,
    explain_pair,
    get_explainer,
    list_explainers,
    register_explainer,
)
from workbench.explain.faithfulness import DeletionCurve, deletion_curve
from workbench.explain.render import DisplayExplanation, display_explanation, overlay_png, write_overlay

__all__ = [
    "DeletionCurve",
    "DisplayExplanation",
    "Explainer",
    "Explanation",
    "ExplanationUnavailable",
    "PairContext",
    "SideExplanation",
    "applicable",
    "deletion_curve",
    "display_explanation",
    "explain_items",
    "explain_pair",
    "get_explainer",
    "list_explainers",
    "overlay_png",
    "register_explainer",
    "write_overlay",
]
