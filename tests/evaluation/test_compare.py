"""compare_runs: the product's content group is the unit of every paired test; the CLI shows it and small p."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import store
from workbench.cli import main
from workbench.evaluation.compare import compare_runs, format_p_value, paired_tests_frame
from workbench.evaluation.results import scored_pairs
from workbench.metrics import delong_test, mcnemar


def _test_pairs(path, run_id: str):
    with store.connect(path) as con:
        threshold = con.execute("SELECT threshold FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        return scored_pairs(con, run_id).query("split == 'test'").set_index("pair_id"), threshold


def _direct_tests(runs, groups_of_product: dict[str, str] | None = None) -> tuple[dict, dict, int]:
    """The clustered tests recomputed from the stored scores, clustered by product (optionally merged)."""
    base, tb = _test_pairs(runs.path, runs.kw_run)
    other, ta = _test_pairs(runs.path, runs.kwc_run)
    other = other.reindex(base.index)
    products = base["product_id"].astype(str)
    groups = products.map(groups_of_product or {}).fillna(products).to_numpy()
    y, sa, sb = base["label"].to_numpy(), other["score"].to_numpy(), base["score"].to_numpy()
    return (delong_test(y, sa, sb, groups=groups), mcnemar((sa >= ta) == y, (sb >= tb) == y, groups=groups),
            len(np.unique(groups)))


def test_paired_tests_cluster_by_content_group_of_the_image_product(two_runs_copy):
    comparison = compare_runs([two_runs_copy.kw_run, two_runs_copy.kwc_run], db=two_runs_copy.path, n_resamples=20)
    delong, mc, n_products = _direct_tests(two_runs_copy)
    assert comparison["n_clusters"] == n_products < comparison["n_test_pairs"]
    tests = comparison["tests"][0]
    assert {tests[m]["n_clusters"] for m in ("pair/f1", "pair/pr_auc", "pair/accuracy", "pair/roc_auc")} == {
        n_products}
    assert tests["pair/roc_auc"]["p_value"] == pytest.approx(delong["p_value"], rel=1e-12)
    assert tests["pair/accuracy"]["p_value"] == pytest.approx(mc["p_value"], rel=1e-12)

    # two test products showing byte-identical photos are one content group: one cluster fewer
    base, _ = _test_pairs(two_runs_copy.path, two_runs_copy.kw_run)
    first, second = sorted(base["product_id"].astype(str).unique())[:2]
    with store.connect(two_runs_copy.path) as con:
        con.execute("UPDATE images SET sha256 = (SELECT min(sha256) FROM images WHERE product_id = ?) "
                    "WHERE product_id = ?", [first, second])
    merged = compare_runs([two_runs_copy.kw_run, two_runs_copy.kwc_run], db=two_runs_copy.path, n_resamples=20)
    delong, mc, n_groups = _direct_tests(two_runs_copy, {second: first})
    assert merged["n_clusters"] == n_groups == n_products - 1
    assert merged["tests"][0]["pair/roc_auc"]["p_value"] == pytest.approx(delong["p_value"], rel=1e-12)
    assert merged["tests"][0]["pair/accuracy"]["p_value"] == pytest.approx(mc["p_value"], rel=1e-12)


def test_cli_compare_prints_the_tests_with_their_clusters(two_runs_copy, capsys):
    assert main(["--db", str(two_runs_copy.path), "compare", two_runs_copy.kw_run, two_runs_copy.kwc_run]) == 0
    lines = capsys.readouterr().out.splitlines()
    _, _, n_products = _direct_tests(two_runs_copy)
    start = next(i for i, line in enumerate(lines) if line.startswith("Paired tests against"))
    assert f"in {n_products} product clusters (the unit of each test" in lines[start]
    header, *rows = lines[start + 1:]
    assert header.split()[:4] == ["run", "metric", "test", "clusters"]
    assert [row.split()[1] for row in rows] == ["pair/f1", "pair/pr_auc", "pair/accuracy", "pair/roc_auc"]
    assert all(f" {n_products} " in row for row in rows)


@pytest.mark.parametrize(("p", "shown"), [(None, ""), (float("nan"), ""), (0.0, "< 1e-4"), (1e-119, "< 1e-4"),
                                          (9.99e-5, "< 1e-4"), (1e-4, "0.0001"), (0.04321, "0.0432"), (1.0, "1.0000")])
def test_format_p_value(p, shown):
    assert format_p_value(p) == shown


def test_paired_tests_frame_formats_p_and_shows_clusters():
    entry = {"test": "DeLong", "delta": 0.2, "p_value": 3e-9, "p_holm": 6e-9, "n_clusters": 41}
    comparison = {"tests": [{"run_id": "r2", "pair/roc_auc": entry,
                             "pair/accuracy": {**entry, "test": "McNemar", "p_value": 0.2, "p_holm": 0.4}}]}
    frame = paired_tests_frame(comparison, {"r2": "run two"}).set_index("metric")
    assert frame.loc["pair/roc_auc", ["run", "clusters", "p", "p (Holm)", "significant (5%)"]].tolist() == [
        "run two", 41, "< 1e-4", "< 1e-4", "yes"]
    assert frame.loc["pair/accuracy", ["p", "p (Holm)", "significant (5%)"]].tolist() == ["0.2000", "0.4000", "no"]
    assert frame.loc["pair/f1", "p"] == ""  # a metric without a test stays empty
