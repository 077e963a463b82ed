"""Security rules for the app: data roots, model folders, code-running settings, upload size and exposure."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from workbench import security
from workbench.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
KEYWORD = {"name": "kw", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}}


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A database folder and a working directory (the default roots) next to an outside folder."""
    db_dir, work, outside = tmp_path / "db", tmp_path / "work", tmp_path / "outside"
    for folder in (db_dir, work, outside):
        folder.mkdir()
    monkeypatch.delenv(security.DATA_ROOTS_ENV, raising=False)
    monkeypatch.chdir(work)
    return {"db": db_dir / "wb.duckdb", "db_dir": db_dir, "work": work, "outside": outside}


# ---------------------------------------------------------------------------------------------- data roots
def test_default_roots_are_the_database_folder_and_the_working_directory(roots):
    assert security.data_roots(roots["db"]) == (roots["db_dir"].resolve(), roots["work"].resolve())


def test_configured_roots_replace_the_defaults(roots, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(security.DATA_ROOTS_ENV, os.pathsep.join(["~/outside", "", "sub", "~/outside"]))
    assert security.data_roots(roots["db"]) == (roots["outside"].resolve(), (roots["work"] / "sub").resolve())


def test_paths_under_a_root_resolve_and_others_are_refused_with_the_roots_named(roots):
    inside = roots["db_dir"] / "pairs.csv"
    inside.write_text("a,b\n")
    assert security.check_server_path(f"  {inside}  ", roots["db"]) == inside.resolve()
    assert security.check_server_path("pairs.csv", roots["db"]) == (roots["work"] / "pairs.csv").resolve()
    with pytest.raises(security.PathNotAllowedError) as refused:
        security.check_server_path("/etc/passwd", roots["db"], what="source")
    message = str(refused.value)
    assert "The source '/etc/passwd' is outside the data roots" in message
    assert str(roots["db_dir"].resolve()) in message and str(roots["work"].resolve()) in message
    assert f"{security.DATA_ROOTS_ENV}=" in message


@pytest.mark.parametrize("typed", ["{db_dir}/../outside/x.csv", "{outside}/x.csv", "{db_dir}x/y.csv", "/",
                                   "{outside}/missing/never.csv"])
def test_escapes_and_neighbours_are_refused_whether_or_not_they_exist(roots, typed):
    path = typed.format(db_dir=roots["db_dir"], outside=roots["outside"])
    with pytest.raises(security.PathNotAllowedError):
        security.check_server_path(path, roots["db"])


def test_symlinks_are_followed_before_the_check(roots):
    secret = roots["outside"] / "secret.csv"
    secret.write_text("token\n")
    (roots["db_dir"] / "link.csv").symlink_to(secret)
    (roots["db_dir"] / "linked_dir").symlink_to(roots["outside"], target_is_directory=True)
    for typed in (roots["db_dir"] / "link.csv", roots["db_dir"] / "linked_dir" / "secret.csv"):
        with pytest.raises(security.PathNotAllowedError):
            security.check_server_path(typed, roots["db"])
    inner = roots["work"] / "data.csv"
    inner.write_text("a\n")
    (roots["db_dir"] / "inner.csv").symlink_to(inner)  # a link between two roots stays allowed
    assert security.check_server_path(roots["db_dir"] / "inner.csv", roots["db"]) == inner.resolve()


def test_empty_or_nul_paths_are_refused(roots):
    with pytest.raises(ValueError, match="empty"):
        security.check_server_path("  ", roots["db"])
    with pytest.raises(security.PathNotAllowedError, match="NUL"):
        security.check_server_path(f"{roots['db_dir']}/a\x00b", roots["db"])


# ------------------------------------------------------------------------------------------- model folders
def test_hub_ids_pass_and_local_model_folders_must_be_under_a_root(roots, monkeypatch):
    monkeypatch.setenv("HOME", str(roots["outside"]))
    security.check_model_option("sentence-transformers/all-MiniLM-L6-v2", roots["db"])
    security.check_model_option(None, roots["db"])
    (roots["work"] / "models" / "mine").mkdir(parents=True)
    security.check_model_option("models/mine", roots["db"])  # an existing relative folder under the cwd root
    (roots["work"] / "org").mkdir()
    (roots["work"] / "org" / "model").symlink_to(roots["outside"], target_is_directory=True)
    for value in (str(roots["outside"]), "~/models", "../outside", "./../outside/m", "org/model"):
        with pytest.raises(security.PathNotAllowedError, match="model folder"):
            security.check_model_option(value, roots["db"])


@pytest.mark.parametrize(("value", "is_path"), [("bert-base-uncased", False), ("openai/clip-vit-base-patch32", False),
                                               ("/models/x", True), ("~/x", True), ("./x", True), ("a/../b", True)])
def test_what_counts_as_a_path(roots, value, is_path):
    assert security.is_path_like(value) is is_path


# ------------------------------------------------------------------------------------------- remote code
def test_code_running_settings_are_listed_from_configs_and_raw_mappings():
    config = config_from_dict({**KEYWORD, "plugins": ["my_encoders.py"],
                               "text_encoder": {"type": "hf_text", "model": "org/m", "trust_remote_code": True}})
    assert security.code_execution_settings(config) == ["text_encoder.trust_remote_code = true",
                                                        "plugins = ['my_encoders.py']"]
    raw = {**KEYWORD, "image_encoder": {"type": "clip_image", "trust_remote_code": False}}
    assert security.code_execution_settings(raw) == []
    assert security.code_execution_settings(config_from_dict(KEYWORD)) == []


def test_the_builder_refuses_trust_remote_code_but_not_its_default():
    with pytest.raises(security.RemoteCodeError, match="'trust_remote_code' cannot be set from the app"):
        security.refuse_code_options({"model": "org/m", "trust_remote_code": True}, "Text encoder")
    security.refuse_code_options({"model": "org/m", "trust_remote_code": False}, "Text encoder")


def test_app_runs_need_the_opt_in_for_code_running_configs(monkeypatch):
    risky = config_from_dict({**KEYWORD, "name": "risky", "plugins": ["x.py"]})
    monkeypatch.delenv(security.ALLOW_REMOTE_CODE_ENV, raising=False)
    security.check_app_run_config(config_from_dict(KEYWORD))
    with pytest.raises(security.RemoteCodeError) as refused:
        security.check_app_run_config(risky)
    assert "'risky' sets plugins = ['x.py']" in str(refused.value)
    assert f"{security.ALLOW_REMOTE_CODE_ENV}=1" in str(refused.value)
    monkeypatch.setenv(security.ALLOW_REMOTE_CODE_ENV, "0")
    with pytest.raises(security.RemoteCodeError):
        security.check_app_run_config(risky)
    monkeypatch.setenv(security.ALLOW_REMOTE_CODE_ENV, "1")
    security.check_app_run_config(risky)


def test_background_runs_refuse_before_queueing_anything(tmp_path, monkeypatch):
    from workbench.run import runner

    monkeypatch.delenv(security.ALLOW_REMOTE_CODE_ENV, raising=False)
    db = tmp_path / "wb.duckdb"
    risky = config_from_dict({**KEYWORD, "name": "risky",
                              "text_encoder": {"type": "hf_text", "model": "org/m", "trust_remote_code": True}})
    with pytest.raises(security.RemoteCodeError):
        runner.start_background_batch([config_from_dict(KEYWORD), risky], ["tiny"], db=db, device="cpu")
    with pytest.raises(security.RemoteCodeError):
        runner.start_background_run(risky, "tiny", db=db, device="cpu")
    assert runner.list_runs(db=db).empty


# ------------------------------------------------------------------------------------------- upload size
def test_upload_limit_defaults_to_the_shipped_server_limit_and_never_exceeds_it(monkeypatch):
    monkeypatch.delenv(security.MAX_UPLOAD_ENV, raising=False)
    shipped = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert shipped["server"]["maxUploadSize"] == security.DEFAULT_MAX_UPLOAD_MB
    assert security.upload_limit_mb() == security.upload_limit_mb(200) == 200
    monkeypatch.setenv(security.MAX_UPLOAD_ENV, "5")
    assert security.upload_limit_mb(200) == 5
    monkeypatch.setenv(security.MAX_UPLOAD_ENV, "500")
    assert security.upload_limit_mb(200) == 200
    for bad in ("lots", "0", "-3"):
        monkeypatch.setenv(security.MAX_UPLOAD_ENV, bad)
        with pytest.raises(ValueError, match=security.MAX_UPLOAD_ENV):
            security.upload_limit_mb(200)


# --------------------------------------------------------------------------------------------- exposure
def test_the_shipped_config_binds_to_loopback():
    shipped = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert security.is_loopback(shipped["server"]["address"])


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    (None, False), ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("gpu-box", False),
])
def test_loopback_addresses(address, loopback):
    assert security.is_loopback(address) is loopback


def test_the_exposure_warning_appears_only_without_authentication(monkeypatch):
    monkeypatch.delenv(security.AUTH_PROXY_ENV, raising=False)
    assert security.exposure_warning("127.0.0.1", login_configured=False) is None
    warning = security.exposure_warning(None, login_configured=False)
    assert warning is not None and "every network interface with no authentication" in warning
    assert "address 0.0.0.0" in security.exposure_warning("0.0.0.0", login_configured=False)
    assert security.exposure_warning("0.0.0.0", login_configured=True) is None
    monkeypatch.setenv(security.AUTH_PROXY_ENV, "1")
    assert security.exposure_warning("0.0.0.0", login_configured=False) is None
