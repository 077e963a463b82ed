"""A model named by a local path says what is wrong with the folder ("folder not found: …", what belongs inside),
never to download a path from the Hugging Face Hub."""

from __future__ import annotations

import pytest

from workbench.config import config_from_dict
from workbench.models import create_encoder
from workbench.models.base import ModelFolderError
from workbench.models.hf_loading import looks_like_path
from workbench.run import runner

MISSING = "/path/that/does/not/exist"


@pytest.mark.parametrize("name", ["hf_text", "hf_vision", "clip_image", "clip_text"])
def test_a_missing_folder_says_folder_not_found_and_what_it_expected(name):
    encoder = create_encoder(name, model=MISSING)
    with pytest.raises(ModelFolderError) as caught:
        encoder.dim  # noqa: B018 - the first use loads the model
    message = str(caught.value)
    assert message.startswith(f"folder not found: {MISSING}") and "config.json" in message
    assert "safetensors" in message and "Hub" not in message and f"download {MISSING}" not in message


def test_an_empty_folder_says_what_it_lacks(tmp_path):
    encoder = create_encoder("hf_text", model=str(tmp_path))
    with pytest.raises(ModelFolderError, match="it has no config.json and no \\*.safetensors weights"):
        encoder.dim  # noqa: B018


def test_a_missing_sentence_transformers_folder_is_named(tmp_path):
    with pytest.raises(ModelFolderError, match=f"folder not found: {tmp_path / 'gone'}.*modules.json"):
        create_encoder("st_folder", model=str(tmp_path / "gone"))


@pytest.mark.parametrize(("model", "path"), [
    ("/models/minilm", True), ("./minilm", True), ("../models/x", True), ("~/models/x", True),
    ("models/base/minilm", True), ("C:\\models\\x", True),
    ("sentence-transformers/all-MiniLM-L6-v2", False), ("bert-base-uncased", False),
])
def test_paths_are_told_apart_from_hub_ids(model, path):
    assert looks_like_path(model) is path


def test_a_run_with_a_missing_model_folder_fails_with_that_message(catalog_db, tmp_path):
    path, name = catalog_db
    db = tmp_path / "runs.duckdb"
    db.write_bytes(path.read_bytes())
    config = config_from_dict({"name": "missing", "image_encoder": {"type": "keyword_image"},
                               "text_encoder": {"type": "hf_text", "model": MISSING}, "fusion": {"type": "cosine"}})
    record = runner.get_run(runner.run(config, name, db=db, device="cpu"), db=db)
    assert record["status"] == "failed" and record["error"].startswith(f"ModelFolderError: folder not found: {MISSING}")
