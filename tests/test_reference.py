"""The reference-architecture suite end to end on a tiny catalogue, and its comparison table."""

from __future__ import annotations

import re

import pytest
import torch

from workbench.cli import build_parser
from workbench.config import RunConfig, load_config
from workbench.demo import DEMO_SUITES, NEGATIVE_KINDS, comparison_table, demo_configs, run_demo
from workbench.run import runner

TINY_ENCODER = {"width": 4, "image_size": 32, "epochs": 1, "hidden": 8, "embed_dim": 8, "max_length": 16}
TINY_FUSION = {"epochs": 2, "patience": 1}


def _tiny(config: RunConfig) -> RunConfig:
    """The same design with tiny widths and 1-2 epochs (only the options each part already has are shrunk)."""

    def shrink(section: dict, tiny: dict) -> dict:
        return {**section, **{k: v for k, v in tiny.items() if k in section or k in ("epochs", "patience")}}

    image = shrink(config.image_encoder, TINY_ENCODER)
    text = config.text_encoder if config.text_encoder["type"] == "tfidf" else shrink(config.text_encoder, TINY_ENCODER)
    if text["type"] == "minilm":
        text = {"type": "minilm", "max_length": 16}
    fusion = shrink(config.fusion, TINY_FUSION) if config.fusion["type"] != "cca" else config.fusion
    return RunConfig(**{**config.to_dict(), "image_encoder": image, "text_encoder": text, "fusion": fusion})


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("reference") / "ref.duckdb"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_demo(
            db=db,
            n_products=30,
            suite="reference",
            device="cpu",
            run=lambda config, name: runner.run(_tiny(config), name, db=db, device="cpu"),
        )
    finally:
        torch.set_num_threads(threads)
    return db, results


def test_reference_suite_configs_are_offline_and_documented():
    configs = demo_configs("reference")
    assert [c.name for c in configs] == list(DEMO_SUITES["reference"])
    assert all(c.offline and "scaled down" in c.description.lower() for c in configs)
    online = load_config("ref-resnet50-bert-attention")
    assert not online.offline and online.fusion["type"] == "attention_fusion"
    assert online.image_encoder["model"] == "microsoft/resnet-50"
    assert build_parser().parse_args(["demo", "--suite", "reference"]).suite == "reference"


def test_reference_suite_runs_and_compares_against_the_baseline(reference_runs):
    db, results = reference_runs
    assert (results["status"] == "done").all(), results.get("error")
    run_ids = list(results["run_id"])
    table = comparison_table(run_ids, run_ids[0], db=db)
    assert list(table["config"]) == list(DEMO_SUITES["reference"])  # one row per design, baseline first
    ci = re.compile(r"^\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]$")
    for column in ("pair/f1", "pair/accuracy", "pair/roc_auc", "t2i/success@5"):
        assert table[column].str.match(ci).all(), table[column].tolist()
    tests = [c for c in table.columns if c.startswith("Δ ")]
    assert {c.split("(")[0].strip() for c in tests} == {"Δ f1", "Δ accuracy", "Δ roc_auc"}
    assert {c.split(", ")[1].rstrip(")") for c in tests} == {"paired bootstrap", "McNemar", "DeLong"}
    assert (table.loc[0, tests] == "baseline").all()
    p_value = re.compile(r"^[+-]\d\.\d{3} \(p(=[01]\.\d{4}|<1e-4)\)$")
    for column in tests:
        values = table.loc[1:, column]
        assert values.str.match(p_value).all(), values.tolist()
        assert all("p<1e-4" in v or 0 <= float(v.split("p=")[1].rstrip(")")) <= 1 for v in values)
    for row in table.to_dict("records"):  # kinds with too few test pairs are shown but never ranked worst
        rankable = [k for k in NEGATIVE_KINDS if row[f"AUC vs {k}"] and "too few pairs" not in row[f"AUC vs {k}"]]
        assert row["worst negative kind"].split(" ")[0] in (rankable or [""])


def test_multitask_run_stores_its_category_accuracy(reference_runs):
    db, results = reference_runs
    run_id = results.loc[results["config"] == "ref-multitask", "run_id"].item()
    accuracy = runner.get_run(run_id, db=db)["curves"]["val_category_accuracy"]
    assert accuracy is None or 0 <= accuracy <= 1
