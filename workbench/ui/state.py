"""Session state of every page, declared once: IDs and small values under page-prefixed keys.

:func:`init_state` runs at the top of every page (through :func:`workbench.ui.common.init_page`), so a page never
meets a missing key and the keys shared between pages (``selected_eval_set``, ``selected_runs``,
``configs_selection``) are set up the same way wherever a session starts.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

BUILDER_DEFAULTS: dict[str, Any] = {
    "configs_name": "my-config", "configs_description": "",
    "configs_image_encoder": "color_histogram", "configs_image_options": "{}",
    "configs_text_encoder": "tfidf", "configs_text_options": "{}",
    "configs_fusion": "contrastive", "configs_fusion_options": "{}",
    "configs_policy": "max_f1", "configs_target": 0.9, "configs_cost_fp": 1.0, "configs_cost_fn": 1.0,
    "configs_per_category": False, "configs_seed": 0, "configs_batch_size": 64,
}  # fmt: skip
SESSION_DEFAULTS: dict[str, Any] = {
    "selected_eval_set": None,  # name of the eval set last chosen on any page
    "selected_runs": [],  # run ids chosen for comparison (Compare, Embedding space, Mismatches, Reports)
    "configs_selection": [],  # labels of the config grid the Runs page starts with
    "configs_locked": None,  # (config name, its code-running settings) of the last loaded file, or None
    "compare_baseline": None,
    "embed_params": None,  # last committed projection parameters (small dict)
    "mismatch_message": None,  # one-shot confirmation shown after a rerun
    "search_submitted": False,  # the Search form was submitted once (its widgets then hold the query)
    "explain_open": [],  # "run_id/pair_id" of the explanation panels left open (Mismatches, detail view)
    "detail_item": None,  # [eval set, product id] the detail view shows (any page), or None when closed
    "detail_runs": None,  # runs the detail view shows side by side (set from selected_runs when first opened)
    "detail_message": None,  # one-shot result of the detail view's last tag edit
    "selection_message": None,  # one-shot result of the last bulk tag / saved view (any page)
    "home_demo_runs": [],  # run ids of the demo this session started (listed first on Home)
    "home_demo_message": None,  # one-shot: how many demo runs were queued or already existed
    "runs_meta_saved": None,  # one-shot: the run whose name, tags and notes were just saved
    "compare_eval_set": None,  # the eval set whose runs Compare offers
    "mismatch_recomputed": None,  # (run id, headline metrics before the last recompute) for before/after
    **BUILDER_DEFAULTS,
}


def init_state() -> None:
    """Set every missing key to its default (lists copied, so sessions never share one)."""
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, list(value) if isinstance(value, list) else value)
