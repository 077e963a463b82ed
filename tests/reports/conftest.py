"""Report fixtures: one session database (30-product catalogue with a ``<script>`` title injected into a positive
test text, a keyword-cosine run and a keyword-contrastive run) and every format written once per case."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INJECTED = "<script>alert(1)</script>"
FORMATS = ("html", "pdf", "md", "json", "csv", "parquet")
BASE = {"image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"}}


@dataclass
class ReportDB:
    path: Path
    eval_set: str
    cosine: str
    contrastive: str
    injected_text_id: str


@dataclass
class Written:
    folder: Path
    run_ids: list[str]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> ReportDB:
    from workbench import store
    from workbench.config import config_from_dict
    from workbench.data.evalsets import create_catalog_eval_set
    from workbench.run import runner

    path = tmp_path_factory.mktemp("reports") / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=30, seed=1)
    with store.connect(path) as con:
        text_id = con.execute(
            "SELECT p.text_id FROM pairs p WHERE p.eval_set = 'tiny' AND p.split = 'test' AND p.label = 1 "
            "ORDER BY p.pair_id LIMIT 1").fetchone()[0]
        con.execute("UPDATE texts SET text = text || ' ' || ? WHERE eval_set = 'tiny' AND text_id = ?",
                    [INJECTED, text_id])
    ids = []
    for name, fusion in (("kw", {"type": "cosine"}), ("kw-contrastive", {"type": "contrastive", "dim": 8,
                                                                         "epochs": 5})):
        run_id = runner.run(config_from_dict({"name": name, **BASE, "fusion": fusion}), "tiny", db=path,
                            device="cpu")
        record = runner.get_run(run_id, db=path)
        assert record["status"] == "done", record["error"]
        ids.append(run_id)
    return ReportDB(path, "tiny", ids[0], ids[1], text_id)


def _write_all(db: ReportDB, run_ids: list[str], folder: Path) -> Written:
    """Read the runs once for the visual formats and JSON (as the app does); CSV/Parquet read on their own."""
    from workbench.reports import build_report_data, write_report

    written = Written(folder, run_ids)
    data = build_report_data(run_ids, db=db.path)
    for fmt in FORMATS:
        start = time.perf_counter()
        shared = data if fmt in ("html", "pdf", "md", "json") else None
        written.files[fmt] = write_report(run_ids, fmt=fmt, out=folder / f"report.{fmt}", db=db.path, data=shared)
        written.seconds[fmt] = time.perf_counter() - start
    return written


@pytest.fixture(scope="session")
def single(report_db: ReportDB, tmp_path_factory: pytest.TempPathFactory) -> Written:
    """Every format for the contrastive run alone."""
    return _write_all(report_db, [report_db.contrastive], tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="session")
def comparison(report_db: ReportDB, tmp_path_factory: pytest.TempPathFactory) -> Written:
    """Every format for cosine (baseline) vs contrastive."""
    return _write_all(report_db, [report_db.cosine, report_db.contrastive], tmp_path_factory.mktemp("compare"))
