"""Test data for the analysis pages: a tiny catalogue with a keyword/cosine run and a keyword/contrastive run.

Built once per pytest session (under the session's base temp dir) and shared by tests/viz, tests/test_analysis.py
and the part-2 app tests, which load this module by path. Tests that write (label errors, recomputed metrics)
work on a copy made with :func:`copy_db`.
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
class Part2DB:
    path: Path
    eval_set: str
    kw_run: str  # cosine head on keyword encoders
    kwc_run: str  # contrastive head (scores spread out, some errors of each kind)


def build(tmp_path_factory: pytest.TempPathFactory) -> Part2DB:
    root = tmp_path_factory.getbasetemp() / "part2-shared"
    marker = root / "runs.txt"
    if not marker.exists():
        from workbench import runner
        from workbench.config import config_from_dict
        from workbench.data.evalsets import create_catalog_eval_set

        root.mkdir(parents=True, exist_ok=True)
        path = root / "wb.duckdb"
        create_catalog_eval_set("tiny", db=path, n_products=30, seed=1)
        ids = [runner.run(config_from_dict(c), "tiny", db=path, device="cpu") for c in (KEYWORD, CONTRASTIVE)]
        marker.write_text("\n".join(ids))
    kw, kwc = marker.read_text().split()
    return Part2DB(root / "wb.duckdb", "tiny", kw, kwc)


def copy_db(source: Part2DB, target_dir: Path) -> Part2DB:
    """A private copy of the database (images stay where they are: their paths are absolute)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "wb.duckdb"
    shutil.copy(source.path, target)
    return Part2DB(target, source.eval_set, source.kw_run, source.kwc_run)
