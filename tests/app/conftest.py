"""App fixtures: one session-wide database with a tiny catalogue, a finished keyword run, a failed run and two
saved keyword configurations; ``app_db`` points ``WORKBENCH_DB`` at it for AppTest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYWORD_CONFIG = {
    "name": "kw",
    "image_encoder": {"type": "keyword_image"},
    "text_encoder": {"type": "keyword_text"},
    "fusion": {"type": "cosine"},
}


@dataclass(frozen=True)
class AppDB:
    path: Path
    eval_set: str
    done_run: str
    failed_run: str


@pytest.fixture(scope="session")
def app_db_session(tmp_path_factory: pytest.TempPathFactory) -> AppDB:
    from workbench.config import config_from_dict, dump_config_toml
    from workbench.data.evalsets import create_catalog_eval_set
    from workbench.run import runner

    path = tmp_path_factory.mktemp("app") / "wb.duckdb"
    create_catalog_eval_set("tiny", db=path, n_products=30, seed=1)
    config = config_from_dict(KEYWORD_CONFIG)
    done = runner.run(config, "tiny", db=path, device="cpu")
    failed = runner.run(config_from_dict({**KEYWORD_CONFIG, "name": "kw-missing-set"}), "no-such-set", db=path,
                        device="cpu")
    folder = path.parent / "configs"
    folder.mkdir()
    (folder / "kw.toml").write_text(dump_config_toml(config), encoding="utf-8")
    second = config_from_dict({**KEYWORD_CONFIG, "name": "kw-seed1", "seed": 1})
    (folder / "kw-seed1.toml").write_text(dump_config_toml(second), encoding="utf-8")
    return AppDB(path, "tiny", done, failed)


@pytest.fixture
def app_db(app_db_session: AppDB, monkeypatch: pytest.MonkeyPatch) -> AppDB:
    monkeypatch.setenv("WORKBENCH_DB", str(app_db_session.path))
    monkeypatch.chdir(ROOT)
    return app_db_session


def _open_page(page: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(os.fspath(ROOT / page), default_timeout=60)


def _by_label(widgets, label: str):
    matches = [w for w in widgets if w.label == label]
    assert len(matches) == 1, f"{len(matches)} widgets labelled {label!r}: {[w.label for w in widgets]}"
    return matches[0]


def _page_text(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "success", "info", "warning", "error", "text", "code", "title",
                 "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


@pytest.fixture
def open_page():
    """``open_page("Home.py")`` or ``open_page("pages/3_Runs.py")``: an AppTest with 60 s per run (the first run
    imports torch)."""
    return _open_page


@pytest.fixture
def by_label():
    """``by_label(at.button, "Start")``: the one widget of a list with that label."""
    return _by_label


@pytest.fixture
def page_text():
    """``page_text(at)``: everything the page shows as text (markdown, captions, alerts, code), joined."""
    return _page_text


@pytest.fixture
def keyword_config() -> dict:
    return dict(KEYWORD_CONFIG)
