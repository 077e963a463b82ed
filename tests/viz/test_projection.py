"""Projections: PCA determinism, the projection cache, descriptions that state what was fitted, one UMAP fit."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.evaluation.results import load_scored_pairs
from workbench.viz import projection
from workbench.viz.projection import compute_projection, get_projection, normalise_params, stratified_sample


@pytest.fixture
def count_fits(monkeypatch):
    calls = []
    real = projection.compute_projection

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(projection, "compute_projection", counting)
    return calls


@pytest.fixture(scope="session")
def umap_200():
    """The one UMAP fit of the session (pays numba compilation): 200 clustered points, fit on 150, transform 50."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    labels = np.repeat(np.arange(4), 50)
    x = (centers[labels] + 0.1 * rng.normal(size=(200, 16))).astype(np.float32)
    strata = np.array([f"{'image' if i % 2 else 'text'}|{c}" for i, c in enumerate(labels)])
    params = normalise_params("umap", n_neighbors=10, min_dist=0.1, sample_size=150, seed=0)
    coords, description = compute_projection(x, strata, params)
    return coords, description, labels


def test_umap_fit_on_sample_and_transform(umap_200):
    coords, description, labels = umap_200
    assert coords.shape == (200, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert description == ("UMAP (n_neighbors=10, min_dist=0.1, seed 0) fitted on a stratified sample of 150 of 200 "
                           "points (by modality and category) and applied to the rest with transform")
    # clusters stay apart: each point's nearest other point is in its own cluster
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).mean() > 0.95


def test_umap_get_projection_all_points_then_cached(two_runs_copy, umap_200, count_fits):
    run = two_runs_copy.kwc_run
    first = get_projection(run, db=two_runs_copy.path, method="umap", n_neighbors=5, sample_size=5000)
    assert first.description.startswith("UMAP (n_neighbors=5, min_dist=0.1, seed 0) fitted on all ")
    again = get_projection(run, db=two_runs_copy.path, method="umap", n_neighbors=5, sample_size=5000)
    assert len(count_fits) == 1 and again.from_cache
    np.testing.assert_array_equal(first.frame[["x", "y"]].to_numpy(), again.frame[["x", "y"]].to_numpy())


def test_pca_is_deterministic_and_describes_itself(two_runs_copy, count_fits):
    a = get_projection(two_runs_copy.kw_run, db=two_runs_copy.path, method="pca")
    projection.clear_projections(db=two_runs_copy.path)
    b = get_projection(two_runs_copy.kw_run, db=two_runs_copy.path, method="pca")
    assert len(count_fits) == 2 and not b.from_cache
    np.testing.assert_array_equal(a.frame[["x", "y"]].to_numpy(), b.frame[["x", "y"]].to_numpy())
    n = len(a.frame)
    assert a.description == f"PCA on all {n} points"
    assert list(a.frame.columns) == list(projection.FRAME_COLUMNS)
    assert a.frame["x"].dtype == np.float32
    assert set(a.frame["modality"]) == {"image", "text"}
    assert a.params == {"method": "pca"}


def test_cache_hit_returns_identical_coordinates_without_recomputing(two_runs_copy, count_fits):
    first = get_projection(two_runs_copy.kwc_run, db=two_runs_copy.path, method="pca")
    second = get_projection(two_runs_copy.kwc_run, db=two_runs_copy.path, method="pca")
    assert len(count_fits) == 1
    assert not first.from_cache and second.from_cache
    assert second.description == first.description
    np.testing.assert_array_equal(first.frame[["x", "y"]].to_numpy(), second.frame[["x", "y"]].to_numpy())
    assert first.frame.drop(columns=["x", "y"]).equals(second.frame.drop(columns=["x", "y"]))
    # PCA ignores UMAP-only parameters, so they do not split its cache
    get_projection(two_runs_copy.kwc_run, db=two_runs_copy.path, method="pca", n_neighbors=40, seed=3)
    assert len(count_fits) == 1


def test_pca_description_without_subsampling_for_large_input():
    x = np.random.default_rng(1).normal(size=(12_345, 8)).astype(np.float32)
    coords, description = compute_projection(x, np.zeros(len(x)), {"method": "pca"})
    assert description == "PCA on all 12,345 points" and coords.shape == (12_345, 2)
    # the first component carries the most variance
    assert coords[:, 0].var() >= coords[:, 1].var()


def test_stratified_sample_is_proportional_and_seeded():
    strata = np.array(["image|a"] * 600 + ["text|a"] * 300 + ["text|b"] * 100)
    idx = stratified_sample(strata, 100, seed=0)
    assert len(idx) == 100 and len(set(idx)) == 100
    values, counts = np.unique(strata[idx], return_counts=True)
    assert dict(zip(values, counts, strict=True)) == {"image|a": 60, "text|a": 30, "text|b": 10}
    np.testing.assert_array_equal(idx, stratified_sample(strata, 100, seed=0))
    assert not np.array_equal(idx, stratified_sample(strata, 100, seed=1))
    np.testing.assert_array_equal(stratified_sample(strata, 5000, seed=0), np.arange(1000))


def test_correct_column_matches_the_runs_threshold(two_runs_db):
    result = get_projection(two_runs_db.kwc_run, db=two_runs_db.path, method="pca")
    pairs = load_scored_pairs(two_runs_db.kwc_run, db=two_runs_db.path)
    positives = pairs[pairs["label"] == 1]
    right = (positives["score"] >= positives["threshold"]).groupby(positives["image_id"]).all()
    images = result.frame[result.frame["modality"] == "image"].set_index("item_id")
    for image_id, expected in right.items():
        assert images.at[image_id, "correct"] == bool(expected)
    assert images["label_text"].str.match(r"^[^/]+\.(png|jpg)$").all()
    texts = result.frame[result.frame["modality"] == "text"]
    assert texts["image_path"].isna().all() and texts["label_text"].str.len().gt(0).all()
    assert (result.frame["split"] == "test").all()


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "tsne"}, "method='tsne'"),
    ({"method": "umap", "n_neighbors": 1}, "n_neighbors=1"),
    ({"method": "umap", "min_dist": 2.0}, "min_dist=2.0"),
    ({"method": "umap", "sample_size": 3}, "sample_size=3"),
])
def test_bad_parameters_are_refused(two_runs_db, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        get_projection(two_runs_db.kw_run, db=two_runs_db.path, **kwargs)


def test_unknown_run(two_runs_db):
    with pytest.raises(KeyError, match="not found"):
        get_projection("no-such-run", db=two_runs_db.path, method="pca")


def test_items_carry_their_language_and_strongest_pair_kind(two_runs_db):
    from workbench import store

    frame = get_projection(two_runs_db.kwc_run, db=two_runs_db.path, method="pca").frame
    with store.connect(two_runs_db.path) as con:
        language = dict(con.execute("SELECT text_id, language FROM texts").fetchall())
        kinds = {t: set(k) for t, k in con.execute("SELECT text_id, list(DISTINCT pair_kind) FROM pairs "
                                                   "GROUP BY 1").fetchall()}
    texts = frame[frame["modality"] == "text"]
    assert texts["language"].tolist() == [language[t] for t in texts["item_id"]]
    for item, kind in zip(texts["item_id"], texts["pair_kind"], strict=True):
        assert kind == ("positive" if "positive" in kinds[item] else "attribute" if "attribute" in kinds[item]
                        else kind) and kind in kinds[item]
    images = frame[frame["modality"] == "image"]
    assert images["language"].isna().all() and (images["pair_kind"] == "positive").all()
    assert texts["pair_kind"].notna().all()  # every embedded text is in some pair
