"""Configs saved in the app and the CLI share one place: ``<database folder>/configs`` beside the ready-made ones."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main
from workbench.config import (
    SAVED_PREFIX,
    ConfigError,
    config_catalog,
    config_from_dict,
    list_configs,
    load_config,
    save_config,
    user_config_dir,
)
from workbench.demo import demo_configs

KEYWORD = {"name": "kw shop/v1", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}, "seed": 3}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "wb.duckdb"


def test_a_saved_config_lands_next_to_the_database_and_loads_back_by_name(db):
    config = config_from_dict(KEYWORD)
    path = save_config(config, db)
    assert path == db.parent / "configs" / "kw-shop-v1.toml" and path.parent == user_config_dir(db)
    assert load_config("kw-shop-v1", db=db) == config
    assert load_config(f"{SAVED_PREFIX}kw-shop-v1", db=db) == config
    assert load_config("saved:kw-shop-v1", db=db) == config
    with pytest.raises(FileExistsError, match="already exists"):
        save_config(config, db)
    save_config(config.with_seed(9), db, overwrite=True)
    assert load_config("kw-shop-v1", db=db).seed == 9


def test_the_catalogue_lists_ready_made_then_saved_and_names_unreadable_files(db):
    save_config(config_from_dict(KEYWORD), db)
    (user_config_dir(db) / "broken.toml").write_text("name = [", encoding="utf-8")
    catalog = config_catalog(db)
    labels = list(catalog.configs)
    ready_made = [c.name for c in list_configs(db, saved=False)]
    assert labels == [*ready_made, "saved: kw-shop-v1"] and "tfidf-colorhist-cca" in ready_made
    assert catalog.configs["saved: kw-shop-v1"].seed == 3
    assert len(catalog.problems) == 1 and catalog.problems[0].startswith("broken.toml: Could not parse")
    assert [c.name for c in list_configs(db)] == [*ready_made, "kw shop/v1"]


def test_a_ready_made_name_wins_unless_the_saved_prefix_is_given(db):
    save_config(config_from_dict({**KEYWORD, "name": "tfidf-colorhist-cca"}), db)
    assert load_config("tfidf-colorhist-cca", db=db).fusion["type"] == "cca"
    assert load_config("saved: tfidf-colorhist-cca", db=db).fusion == {"type": "cosine"}


def test_an_unknown_name_lists_what_is_available(db):
    save_config(config_from_dict(KEYWORD), db)
    with pytest.raises(ConfigError, match=r"not found.*saved: kw-shop-v1"):
        load_config("nope", db=db)
    with pytest.raises(ConfigError, match="not found"):
        load_config("saved: tfidf-colorhist-cca", db=db)  # only the saved folder is searched


def test_saved_configs_do_not_join_the_demo_suite(db, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DB", str(db))
    save_config(config_from_dict(KEYWORD), db)
    assert "kw shop/v1" not in {c.name for c in demo_configs("all")}


def test_the_cli_lists_and_loads_configs_saved_in_the_app(db, capsys):
    save_config(config_from_dict(KEYWORD), db)
    assert main(["--db", str(db), "configs", "--json"]) == 0
    listed = {c["label"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["saved: kw-shop-v1"]["saved"] and listed["saved: kw-shop-v1"]["name"] == "kw shop/v1"
    assert not listed["tfidf-colorhist-cca"]["saved"]
