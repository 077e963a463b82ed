"""Projections (UMAP/PCA) of a run's joint space and plotly figure builders (no Streamlit)."""

from workbench.viz.figures import (
    confusion_figure,
    embedding_figure,
    pr_figure,
    reliability_figure,
    retrieval_figure,
    roc_figure,
    slice_heatmap,
)
from workbench.viz.projection import ProjectionResult, get_projection
from workbench.viz.training import training_curves_figure

__all__ = [
    "ProjectionResult",
    "confusion_figure",
    "embedding_figure",
    "get_projection",
    "pr_figure",
    "reliability_figure",
    "retrieval_figure",
    "roc_figure",
    "slice_heatmap",
    "training_curves_figure",
]
