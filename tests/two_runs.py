"""Two finished runs on one tiny catalogue: a keyword/cosine run and a keyword/contrastive run.

Built once per pytest session (under the session's base temp dir) and shared, through the ``two_runs_db`` fixture
of tests/conftest.py, by the analysis, comparison, explanation, figure and browser-analysis tests. Tests that write
(label errors, recomputed metrics) work on a copy made with :func:`copy_db` (the ``two_runs_copy`` fixture).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

KEYWORD = {"name": "kw", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}}
CONTRASTIVE = {**KEYWORD, "name": "kwc", "fusion": {"type": "contrastive", "dim": 8, "epochs": 5}}


@dataclass(frozen=True)
class TwoRunsDB:
    path: Path
    eval_set: str
    kw_run: str  # cosine head on keyword encoders
    kwc_run: str  # contrastive head (scores spread out, some errors of each kind)


def build(tmp_path_factory: pytest.TempPathFactory) -> TwoRunsDB:
    root = tmp_path_factory.getbasetemp() / "two-runs-shared"
    marker = root / "runs.txt"
    if not marker.exists():
        from workbench.config import config_from_dict
        from workbench.data.evalsets import create_catalog_eval_set
        from workbench.run import runner

        root.mkdir(parents=True, exist_ok=True)
        path = root / "wb.duckdb"
        create_catalog_eval_set("tiny", db=path, n_products=30, seed=1)
        ids = [runner.run(config_from_dict(c), "tiny", db=path, device="cpu") for c in (KEYWORD, CONTRASTIVE)]
        marker.write_text("\n".join(ids))
    kw, kwc = marker.read_text().split()
    return TwoRunsDB(root / "wb.duckdb", "tiny", kw, kwc)


def copy_db(source: TwoRunsDB, target_dir: Path) -> TwoRunsDB:
    """A private copy of the database (images stay where they are: their paths are absolute)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "wb.duckdb"
    shutil.copy(source.path, target)
    return TwoRunsDB(target, source.eval_set, source.kw_run, source.kwc_run)
