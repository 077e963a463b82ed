"""A finished weight-free run (TF-IDF + colour histograms + CCA) on a 30-product catalogue, built once per session.

Its scores are continuous (no ties), so re-scoring through the restored models reproduces its metrics exactly.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

KEYWORD = {"name": "kw", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}}


@dataclass(frozen=True)
class RobustRun:
    path: Path
    run_id: str  # tfidf-colorhist-cca: continuous scores
    keyword_run: str  # English colour keywords on both sides, cosine: hand-checkable


@pytest.fixture(scope="session")
def robust_run(tmp_path_factory: pytest.TempPathFactory) -> RobustRun:
    """Treat as read-only except for the robustness table of seeds a test owns; copy it to write more."""
    from workbench.config import config_from_dict, load_config
    from workbench.data.evalsets import create_catalog_eval_set
    from workbench.run import runner

    path = tmp_path_factory.mktemp("robustness") / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=30, seed=2)
    run_ids = [runner.run(config, "tiny", db=path, device="cpu")
               for config in (load_config("tfidf-colorhist-cca"), config_from_dict(KEYWORD))]
    assert [runner.get_run(r, db=path)["status"] for r in run_ids] == ["done", "done"]
    return RobustRun(path, *run_ids)


@pytest.fixture
def robust_copy(robust_run: RobustRun, tmp_path: Path) -> RobustRun:
    """A private copy of the run's database (image paths are absolute, so they still resolve)."""
    target = tmp_path / "copy.duckdb"
    shutil.copy(robust_run.path, target)
    return RobustRun(target, robust_run.run_id, robust_run.keyword_run)


@pytest.fixture(scope="session")
def catalogue(robust_run: RobustRun):
    """The run's eval set and its vocabulary (jieba dictionary + attribute values) for the perturbation tests."""
    from workbench import store
    from workbench.data.evalsets import load_eval_set
    from workbench.data.vocab import catalogue_vocabulary

    with store.connect(robust_run.path) as con:
        data = load_eval_set(con, "tiny")
    return data, catalogue_vocabulary(data)
