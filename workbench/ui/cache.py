"""Every cached read of the app, in one place: bounded, keyed, and invalidated per run or per eval set.

- Lists that other processes change (eval sets, finished runs, label-error marks) live briefly (``ttl``); an
  import, a deletion or a mark in this server clears exactly its own entry (``func.clear(args)``).
- Everything about one eval set is keyed by its version (:func:`eval_set_version`: content hash and import time),
  everything about one run by its metrics version (:func:`metrics_version`: when its metrics were computed and
  under which label-error policy), so a re-import or a recomputation is read fresh without clearing anyone's
  entries. Nothing here ever calls ``st.cache_data.clear()``.
- Large read-only objects (projections, report data) and process-wide facts (devices) use ``st.cache_resource``:
  shared, not pickled per hit. Callers never mutate what these return.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from workbench import security
from workbench.config import ConfigCatalog, config_catalog, config_from_dict, user_config_dir
from workbench.data import evalsets, uploads
from workbench.data import tags as item_tags
from workbench.data.images import load_image
from workbench.data.mapping import SourcePreview, preview_image_paths, preview_source
from workbench.demo import results_table
from workbench.evaluation import aggregate, compare, label_errors, results
from workbench.evaluation import mismatches as mismatch_analysis
from workbench.explain import DisplayExplanation, display_explanation
from workbench.reports import RenderedReport, build_report_data, render_report
from workbench.reports.data import ReportData
from workbench.robustness import load_robustness
from workbench.run import runner
from workbench.run import search as run_search
from workbench.viz import ProjectionResult, get_projection

LIST_TTL_S = 2  # lists other processes write to (CLI imports and runs) show up within this
PAGE_SIZE = 24  # pairs per page of the eval-set gallery
MAX_CANDIDATES = 200  # label-error candidates ranked per request
RUN_COLUMNS = ["run_id", "name", "tags", "config", "eval_set", "created_at", "finished_at"]


# --------------------------------------------------------------------------------------------------- versions
def eval_set_version(row: Mapping[str, Any] | pd.Series) -> str:
    """An eval set's version from its row in the list (or its info): a re-import under the same name, even of the
    same content, gets a new one."""
    return f"{row.get('content_hash')}|{row.get('created_at')}"


def metrics_version(run_ids: tuple[str, ...], db: str) -> tuple:
    """When each run's metrics were computed and under which label-error policy: part of every per-run key, so a
    recomputation (e.g. excluding label errors) is read fresh."""
    versions = []
    for run_id in run_ids:
        curves = results.get_artifact(run_id, "curves", db=db) or {}
        versions.append((run_id, curves.get("computed_at"), (curves.get("policies") or {}).get("label_errors")))
    return tuple(versions)


def file_mtime(path: str | Path | None) -> float:
    """Modification time (0 when missing): part of cache keys, so an edited file is read again."""
    try:
        return Path(path).stat().st_mtime if path else 0.0
    except OSError:
        return 0.0


def configs_version(db: str) -> tuple[tuple[str, float], ...]:
    """The saved config files and their modification times: a save, an edit or a deletion changes it."""
    folder = user_config_dir(db)
    return tuple((p.name, file_mtime(p)) for p in sorted(folder.glob("*.toml"))) if folder.is_dir() else ()


# ------------------------------------------------------------------------------------------ process-wide
@st.cache_resource(max_entries=8, show_spinner=False)
def clean_uploads_once(db: str) -> int:
    """Delete stale uploads once per server process and database (later ones go before each new upload)."""
    return uploads.clean_uploads(db)


@st.cache_resource(max_entries=1, show_spinner=False)
def device_summary() -> str:
    """'CPU' or 'NVIDIA H100 · 79.6 GB (cuda)' for the device ``auto`` resolves to."""
    from workbench.run.device import describe_device, resolve_device

    info = describe_device(resolve_device("auto"))
    if info.get("memory_gb"):
        return f"{info['name']} · {info['memory_gb']} GB ({info['type']})"
    return str(info["name"])


@st.cache_resource(max_entries=1, show_spinner=False)
def available_devices() -> list[str]:
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(path: str | None, mtime: float = 0.0, max_side: int = 160) -> bytes | None:
    """A small JPEG of an image, or None when it cannot be read (callers say so); ``mtime`` keys an edited file."""
    if not path:
        return None
    try:
        image = load_image(path, max_side=max_side)
    except (OSError, ValueError):
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# -------------------------------------------------------------------------------------------------- configs
@st.cache_data(max_entries=8, show_spinner=False)
def configs(db: str, version: tuple) -> ConfigCatalog:
    """Ready-made configs by name and saved ones as 'saved: NAME', keyed by :func:`configs_version`."""
    return config_catalog(db)


# ------------------------------------------------------------------------------------------------ eval sets
@st.cache_data(ttl=LIST_TTL_S, max_entries=8, show_spinner=False)
def eval_sets(db: str) -> pd.DataFrame:
    """Every eval set, newest first (the one cached list; :func:`forget_eval_sets` after an import or deletion)."""
    return evalsets.list_eval_sets(db)


def forget_eval_sets(db: str) -> None:
    """This database's eval-set list is stale (after an import or a deletion here)."""
    eval_sets.clear(db)


@st.cache_data(max_entries=16, show_spinner=False)
def eval_set_info(db: str, name: str, version: str) -> dict:
    return evalsets.get_eval_set_info(name, db)


@st.cache_data(max_entries=64, show_spinner=False)
def pairs_page(db: str, name: str, version: str, filters: tuple, page: int, tagged: tuple[str, ...] = ()
               ) -> tuple[pd.DataFrame, int]:
    """One gallery page of pairs and how many match ``filters`` (split, label, kind, category, search, tag, and
    the products of a saved view or None); ``tagged`` (the tag's products) keys a tag filter to its content."""
    split, label, kind, category, search, tag, products = filters
    return evalsets.query_pairs(db, name, split=split, label=label, pair_kind=kind, category=category,
                                search=search, tag=tag, products=None if products is None else list(products),
                                limit=PAGE_SIZE, offset=page * PAGE_SIZE)


# ----------------------------------------------------------------------------------------- tags and views
@st.cache_data(ttl=LIST_TTL_S, max_entries=16, show_spinner=False)
def tag_counts(eval_set: str, db: str) -> pd.DataFrame:
    """The eval set's tags and how many products carry each (:func:`forget_tags` after a change here)."""
    return item_tags.list_tags(eval_set, db=db)


@st.cache_data(ttl=LIST_TTL_S, max_entries=64, show_spinner=False)
def tagged_products(eval_set: str, tag: str, db: str) -> tuple[str, ...]:
    return tuple(item_tags.tagged_products(eval_set, tag, db=db))


def forget_tags(eval_set: str, db: str, changed: Iterable[str]) -> None:
    """These tags of this eval set changed here: their product lists and the tag counts are stale."""
    tag_counts.clear(eval_set, db)
    for tag in changed:
        tagged_products.clear(eval_set, tag, db)


@st.cache_data(ttl=LIST_TTL_S, max_entries=16, show_spinner=False)
def saved_views(eval_set: str, db: str) -> pd.DataFrame:
    return item_tags.list_views(eval_set, db=db)


@st.cache_data(ttl=LIST_TTL_S, max_entries=32, show_spinner=False)
def saved_view(eval_set: str, name: str, db: str) -> item_tags.SavedView:
    return item_tags.get_view(eval_set, name, db=db)


def forget_view(eval_set: str, name: str, db: str) -> None:
    saved_views.clear(eval_set, db)
    saved_view.clear(eval_set, name, db)


@st.cache_data(max_entries=8, show_spinner=False)
def chart_data(db: str, name: str, version: str) -> dict[str, pd.DataFrame]:
    return evalsets.chart_data(db, name)


@st.cache_data(max_entries=16, show_spinner=False)
def leakage_warnings(versions: tuple[tuple[str, str], ...], db: str) -> list[str]:
    """Warnings for eval sets (name, version) imported with content (a product, image or title) in two splits."""
    return [warning for name, _ in versions if (warning := evalsets.leakage_warning(name, db))]


@st.cache_data(max_entries=16, show_spinner=False)
def source_preview(path: str, mtime: float, fmt: str | None, db: str) -> SourcePreview:
    """A source's columns, first rows and row count before import (keyed by its modification time; a ZIP's table
    is read from a temporary extraction under the database's folder)."""
    return preview_source(path, fmt, db=db)


@st.cache_data(max_entries=16, show_spinner=False)
def image_path_preview(path: str, mtime: float, fmt: str | None, mapping: tuple[tuple[str, str | None], ...],
                       image_root: str | None, db: str) -> pd.DataFrame:
    """How the first rows' image paths resolve (with PNG thumbnails), keyed by the source, its modification time,
    the format, the mapping and the image root."""
    return preview_image_paths(path, fmt=fmt, mapping=dict(mapping), image_root=image_root, db=db)


# ----------------------------------------------------------------------------------------------------- runs
@st.cache_data(ttl=LIST_TTL_S, max_entries=8, show_spinner=False)
def finished_runs(db: str) -> pd.DataFrame:
    """Finished runs, newest first, with their label (:func:`workbench.evaluation.compare.run_label`)."""
    runs = runner.list_runs(db=db)
    runs = runs.loc[runs["status"] == "done", RUN_COLUMNS].reset_index(drop=True)
    runs["label"] = [compare.run_label(r) for r in runs.to_dict("records")]
    return runs


@st.cache_data(ttl=60, max_entries=8, show_spinner=False)
def recent_results(db: str, runs: tuple[tuple[str, str, str], ...]) -> pd.DataFrame:
    """Headline metrics (with 95% CIs) of runs given as (run id, status, finished at), with their eval set and
    creation time; a status change is a new key, and a recomputation shows within a minute."""
    if not runs:
        return pd.DataFrame()
    run_ids = [r[0] for r in runs]
    table = results_table(run_ids, db=db)
    info = runner.list_runs(db=db).set_index("run_id")
    table.insert(2, "eval_set", table["run_id"].map(info["eval_set"]))
    table["created"] = table["run_id"].map(info["created_at"])
    return table


# ----------------------------------------------------------------------------------------- one run's results
@st.cache_data(max_entries=16, show_spinner=False)
def comparison(run_ids: tuple[str, ...], baseline: str, db: str, version: tuple) -> dict:
    return compare.compare_runs(list(run_ids), db=db, baseline=baseline)


@st.cache_data(max_entries=32, show_spinner=False)
def curves(run_id: str, db: str, version: tuple) -> dict | None:
    return results.get_artifact(run_id, "curves", db=db)


@st.cache_data(max_entries=16, show_spinner=False)
def diagnostics(run_id: str, db: str, version: tuple) -> tuple[dict[str, float], dict]:
    """A run's stored geometry metrics (``diag/*`` by name) and its diagnostics artifact."""
    metrics = aggregate.load_metrics(run_id, db=db)
    stored = metrics[metrics["name"].str.startswith("diag/")].set_index("name")["value"].to_dict()
    return stored, results.get_artifact(run_id, "diagnostics", db=db) or {}


@st.cache_data(max_entries=16, show_spinner=False)
def scored_pairs(run_id: str, split: str, db: str, version: tuple) -> pd.DataFrame:
    return results.load_scored_pairs(run_id, db=db, split=split)


@st.cache_data(max_entries=16, show_spinner=False)
def slice_frame(labels: tuple[tuple[str, str], ...], db: str, version: tuple) -> pd.DataFrame:
    """Every slice of every run, long format, with the runs' labels in ``run``."""
    return compare.slice_metrics(dict(labels), db=db)


@st.cache_data(max_entries=32, show_spinner=False)
def pair_details(run_id: str, pair_ids: tuple[str, ...], db: str, version: tuple) -> pd.DataFrame:
    return compare.pair_details(run_id, list(pair_ids), db=db)


def projection(run_id: str, db: str, version: tuple, params: tuple[tuple[str, object], ...]) -> ProjectionResult:
    """A run's 2-D map, shared read-only across sessions; ``from_cache`` is False only in the call that computed
    it (a served entry, or one read back from the database's projection table, says so on the page)."""
    _computing.active = False
    result = _projection(run_id, db, version, params)
    return result if _computing.active or result.from_cache else replace(result, from_cache=True)


_computing = threading.local()  # set by _projection when it runs, i.e. on a miss, in this script thread


@st.cache_resource(max_entries=8, show_spinner=False)
def _projection(run_id: str, db: str, version: tuple, params: tuple[tuple[str, object], ...]) -> ProjectionResult:
    _computing.active = True
    return get_projection(run_id, db=db, **dict(params))


# ---------------------------------------------------------------------------------------------- mismatches
@st.cache_data(ttl=5, max_entries=16, show_spinner=False)
def marked_pairs(eval_set: str, db: str) -> pd.DataFrame:
    """Pairs marked as label errors (:func:`forget_marks` after a mark or an unmark here)."""
    return label_errors.list_label_errors(eval_set, db=db)


def forget_marks(eval_set: str, db: str) -> None:
    marked_pairs.clear(eval_set, db)


def marks_version(marked: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(marked["pair_id"]))


@st.cache_data(max_entries=16, show_spinner=False)
def mismatch_counts(run_id: str, db: str, version: tuple) -> dict[str, int]:
    return mismatch_analysis.count_mismatches(run_id, db=db)


@st.cache_data(max_entries=32, show_spinner=False)
def mismatches(run_id: str, db: str, version: tuple, marks: tuple[str, ...], *, kind: str, category: str | None,
               pair_kind: str | None, sort: str, limit: int, offset: int, include_marked: bool,
               tag: str | None = None, tagged: tuple[str, ...] = ()) -> pd.DataFrame:
    """A page of mismatches; ``tagged`` (the tag's products, :func:`tagged_products`) keys a tag filter."""
    return mismatch_analysis.mismatches(run_id, db=db, kind=kind, category=category, pair_kind=pair_kind,
                                        sort=sort, limit=limit, offset=offset, include_label_errors=include_marked,
                                        tag=tag)


@st.cache_data(max_entries=16, show_spinner=False)
def retrieval_failures(run_id: str, db: str, version: tuple, *, direction: str, k: int, limit: int) -> list[dict]:
    return mismatch_analysis.retrieval_failures(run_id, direction=direction, db=db, k=k, limit=limit)


@st.cache_data(max_entries=16, show_spinner="Ranking pairs by how likely their label is wrong…")
def label_error_candidates(run_ids: tuple[str, ...], split: str | None, db: str, version: tuple) -> pd.DataFrame:
    return label_errors.label_error_candidates(list(run_ids), db=db, top=MAX_CANDIDATES, split=split)


# ------------------------------------------------------------------------------------------------- reports
@st.cache_resource(max_entries=4, ttl=900, show_spinner=False)
def report_data(db: str, run_ids: tuple[str, ...], projection_method: str, version: tuple) -> ReportData:
    """Read once per (runs, projection, metrics version); shared read-only (renderers copy before filling in
    per-file details)."""
    return build_report_data(list(run_ids), db=db,
                             projection=None if projection_method == "none" else projection_method)


@st.cache_data(max_entries=12, ttl=900, show_spinner=False)
def rendered_report(db: str, run_ids: tuple[str, ...], projection_method: str, fmt: str, version: tuple,
                    stem: str) -> RenderedReport:
    return render_report(report_data(db, run_ids, projection_method, version), fmt, stem=stem)


# -------------------------------------------------------------------------------------------------- search
@st.cache_data(max_entries=8, show_spinner=False)
def gallery_items(db: str, eval_set: str, gallery: str, version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A gallery's images and texts (no model needed), keyed by the eval set's version."""
    return run_search.gallery_items(eval_set, gallery, db=db)


@st.cache_resource(max_entries=4, show_spinner=False)
def restored_models(run_id: str, db: str) -> tuple[run_search.RunModels, float]:
    """A finished run's rebuilt models (seconds: encoders refit, head retrained) and that time, on the device the
    run ran on; shared read-only, at most four runs held at once. Restoring runs the run's config, so a config
    that runs outside code (plug-ins, trust_remote_code) is refused unless the server opted in."""
    security.check_app_run_config(config_from_dict(runner.get_run(run_id, db=db)["config"]))
    return run_search.restore_models(run_id, db=db)


@st.cache_resource(max_entries=8, show_spinner=False)
def run_searcher(run_id: str, db: str, gallery: str, retriever: str) -> run_search.RunSearcher:
    """A run's searcher over one gallery; ``retriever``: 'auto', 'lexical', 'cca' or another run's id (only pair
    heads use it: pass 'auto' for a joint-space head). Shared read-only."""
    models, seconds = restored_models(run_id, db)
    other = retriever if retriever in run_search.RETRIEVERS else run_searcher(retriever, db, gallery, "auto")
    return run_search.RunSearcher(models, gallery=gallery, retriever=other, load_s=seconds)


@st.cache_data(max_entries=64, show_spinner=False)
def search_results(run_id: str, db: str, gallery: str, retriever: str, query: tuple, k: int
                   ) -> run_search.SearchResult:
    """One run's answer to ``query``: ("text", str), ("image", bytes) or ("item", eval-set id)."""
    searcher = run_searcher(run_id, db, gallery, retriever)
    kind, value = query
    if kind == "text":
        return searcher.search_text(value, k=k)
    if kind == "image":
        return searcher.search_image(run_search.decode_query_image(value), k=k)
    return searcher.search_item(value, k=k)


@st.cache_data(max_entries=32, show_spinner=False)
def similar_items(run_id: str, db: str, gallery: str, item_id: str, k: int) -> run_search.SearchResult:
    """An eval-set item's nearest gallery images and texts in the run's joint space (for the detail view)."""
    return run_searcher(run_id, db, gallery, "auto").similar(item_id, k=k)


# ---------------------------------------------------------------------------------- explanations, robustness
@st.cache_data(max_entries=64, show_spinner=False)
def explanation(run_id: str, pair_id: str, db: str) -> DisplayExplanation:
    """One pair's explanation under a finished run (overlay PNG, words with attributions, method, score, reasons).

    A finished run's models never change, so (run, pair) is the whole key. The first of a run restores its models
    (:func:`restored_models`), refused for a config that runs outside code unless the server opted in.
    """
    models, _ = restored_models(run_id, db)
    return display_explanation(models, pair_id)


@st.cache_data(ttl=LIST_TTL_S, max_entries=32, show_spinner=False)
def robustness(run_id: str, db: str) -> pd.DataFrame:
    """A run's stored robustness results (suites run from the CLI show up within ``LIST_TTL_S``;
    :func:`forget_robustness` after a suite finishes in this server)."""
    return load_robustness(run_id, db=db)


def forget_robustness(run_id: str, db: str) -> None:
    robustness.clear(run_id, db)
