"""The app on a shared machine: typed server paths stay under the data roots, no code-running settings from the
browser, bounded private uploads, a warning when exposed and a login gate when OIDC is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from workbench import security

ROOT = Path(__file__).resolve().parents[2]
PASSWD_FIRST_LINE = Path("/etc/passwd").read_text(encoding="utf-8").splitlines()[0]


def _errors(at) -> str:
    return " ".join(e.value for e in at.error)


def _server_path_field(open_page):
    at = open_page("pages/1_Eval_sets.py")
    at.run()
    at.radio(key="evalsets_view").set_value("Import").run()
    at.radio(key="evalsets_source_kind").set_value("A file or folder on the server").run()
    return at


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty database of this test only; its folder and the repository (the working directory, whose
    .streamlit/config.toml the pages read) are the default data roots."""
    db = tmp_path / "wb.duckdb"
    monkeypatch.setenv("WORKBENCH_DB", str(db))
    monkeypatch.chdir(ROOT)
    for name in (security.DATA_ROOTS_ENV, security.MAX_UPLOAD_ENV, security.AUTH_PROXY_ENV):
        monkeypatch.delenv(name, raising=False)
    return db


def test_paths_outside_the_roots_are_refused_without_showing_anything(app_db, tmp_path, monkeypatch, open_page,
                                                                       page_text):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text("image_path,title\nx.png,top secret row\n", encoding="utf-8")
    (root / "pairs.csv").symlink_to(outside / "secret.csv")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "ok.csv").write_text("image_path,title\nx.png,a visible row\n", encoding="utf-8")
    monkeypatch.setenv(security.DATA_ROOTS_ENV, str(root))

    at = _server_path_field(open_page)
    for typed in ("/etc/passwd", str(root / "pairs.csv"), str(root / "linked" / "secret.csv"), "../../etc/passwd"):
        at.text_input(key="evalsets_path").input(typed).run()
        assert not at.exception, [e.value for e in at.exception]
        errors = _errors(at)
        assert f"Refused: The path '{typed}' is outside the data roots" in errors
        assert str(root.resolve()) in errors and f"{security.DATA_ROOTS_ENV}=" in errors
        assert not at.dataframe  # no preview
        shown = page_text(at)
        assert PASSWD_FIRST_LINE not in shown and "top secret" not in shown

    at.text_input(key="evalsets_path").input(str(root / "ok.csv")).run()  # the same field reads inside the root
    assert not at.error and "a visible row" in at.dataframe[0].value.to_string()
    at.text_input(key="evalsets_image_root").input("/etc").run()
    assert "Refused: The image root '/etc' is outside the data roots" in _errors(at)
    assert not at.dataframe and not [b for b in at.button if b.label == "Import"]


def test_trust_remote_code_and_model_folders_outside_the_roots_are_refused(app_db, open_page, by_label):
    at = open_page("pages/2_Configurations.py")
    at.run()
    at.selectbox(key="configs_text_encoder").set_value("hf_text").run()
    at.text_area(key="configs_text_options").input('{"model": "org/model", "trust_remote_code": true}').run()
    assert not at.exception
    assert "Text encoder option 'trust_remote_code' cannot be set from the app" in _errors(at)
    assert "run the model repository's own Python" in _errors(at)
    assert not at.code and not [b for b in at.button if b.label == "Save configuration"]

    at.text_area(key="configs_text_options").input('{"model": "/etc"}').run()
    assert "The model folder '/etc' is outside the data roots" in _errors(at)
    assert not at.code

    at.text_area(key="configs_text_options").input('{"model": "org/model", "trust_remote_code": false}').run()
    assert not at.error  # a Hub id is not a path, and the default is harmless
    assert 'model = "org/model"' in at.code[0].value


def test_a_config_file_that_runs_code_is_read_only_here_and_refused_by_the_runs_page(fresh_db, monkeypatch,
                                                                                     open_page, by_label):
    from workbench.run import runner
    from workbench.ui.runs import demo_eval_sets

    monkeypatch.delenv(security.ALLOW_REMOTE_CODE_ENV, raising=False)
    folder = fresh_db.parent / "configs"
    folder.mkdir()
    (folder / "remote.toml").write_text(
        'name = "remote"\nplugins = ["my_plugins.py"]\n\n[image_encoder]\ntype = "keyword_image"\n\n'
        '[text_encoder]\ntype = "hf_text"\nmodel = "org/model"\ntrust_remote_code = true\n\n'
        '[fusion]\ntype = "cosine"\n', encoding="utf-8")

    at = open_page("pages/2_Configurations.py")
    at.run()
    at.selectbox(key="configs_source").set_value("saved: remote")
    by_label(at.button, "Load into the builder").click().run()
    assert not at.exception
    assert "'remote' (a file on disk) sets settings that run code" in " ".join(w.value for w in at.warning)
    locked = by_label(at.text_area, "Set by the file (read-only)")
    assert locked.disabled
    assert locked.value == "text_encoder.trust_remote_code = true\nplugins = ['my_plugins.py']"
    assert "trust_remote_code" not in at.text_area(key="configs_text_options").value
    assert "trust_remote_code" not in at.code[0].value and "plugins" not in at.code[0].value
    grid = at.dataframe[-1].value.set_index("config")
    assert grid.at["saved: remote", "runs outside code"] and not grid.at["tfidf-colorhist-cca", "runs outside code"]

    at = open_page("pages/3_Runs.py")
    at.run()
    by_label(at.multiselect, "Eval sets").set_value([demo_eval_sets()[0]])  # never generated
    by_label(at.multiselect, "Configurations").set_value(["saved: remote"])
    by_label(at.button, "Start").click().run()
    assert not at.exception
    errors = _errors(at)
    assert "Starting the runs failed: Configuration 'remote' sets text_encoder.trust_remote_code = true" in errors
    assert f"{security.ALLOW_REMOTE_CODE_ENV}=1" in errors
    assert runner.list_runs(db=fresh_db).empty


def test_an_upload_over_the_limit_is_refused_and_not_stored(fresh_db, monkeypatch, open_page):
    monkeypatch.setenv(security.MAX_UPLOAD_ENV, "1")
    at = open_page("pages/1_Eval_sets.py")
    at.run()
    at.radio(key="evalsets_view").set_value("Import").run()
    uploader = at.file_uploader(key="evalsets_upload")
    assert "at most 1 MB" in uploader.label
    big = b"image_path,title\n" + b"x.png,a title\n" * 80_000  # 1.1 MB
    uploader.upload("big.csv", big, "text/csv").run()
    assert not at.exception
    assert "Upload refused: 'big.csv' is 1.1 MB; uploads are limited to 1 MB" in _errors(at)
    assert not at.dataframe
    uploads = fresh_db.parent / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_an_imported_upload_is_deleted_and_the_eval_set_keeps_its_file_name(fresh_db, monkeypatch, open_page,
                                                                            by_label):
    from workbench.data.evalsets import list_eval_sets

    shop = fresh_db.parent / "shop"
    shop.mkdir()
    lines = ["image_path,title,sku"]
    for i, (color, rgb) in enumerate({"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 160, 40),
                                      "black": (10, 10, 10)}.items()):
        Image.new("RGB", (40, 32), rgb).save(shop / f"{color}.png")
        lines.append(f"{shop}/{color}.png,{color} ceramic mug,sku-{i}")
    at = open_page("pages/1_Eval_sets.py")
    at.run()
    at.radio(key="evalsets_view").set_value("Import").run()
    at.file_uploader(key="evalsets_upload").upload("My shop.csv", "\n".join(lines).encode(), "text/csv").run()
    stored = list((fresh_db.parent / "uploads").iterdir())
    assert len(stored) == 1 and "shop" not in stored[0].name.lower()
    at.text_input(key="evalsets_image_root").input(str(shop)).run()
    by_label(at.text_input, "Eval set name").input("mine")
    by_label(at.button, "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Imported 'mine': 4 products" in " ".join(s.value for s in at.success)
    assert not stored[0].exists()
    sets = list_eval_sets(fresh_db).set_index("name")
    assert sets.at["mine", "source"] == "My shop.csv"


def test_the_exposure_warning_shows_only_when_bound_beyond_this_machine(app_db, monkeypatch, open_page):
    from streamlit import config as st_config

    at = open_page("pages/7_Reports.py")
    at.run()  # the shipped .streamlit/config.toml binds to 127.0.0.1
    assert not [w for w in at.warning if "no authentication" in w.value]

    real = st_config.get_option
    monkeypatch.setattr(st_config, "get_option",
                        lambda key: "0.0.0.0" if key == "server.address" else real(key))
    for page in ("Home.py", "pages/7_Reports.py"):
        at = open_page(page)
        at.run()
        assert not at.exception
        warning = at.warning[0].value  # first on the page, on every rerun
        assert "listens on address 0.0.0.0 with no authentication" in warning
        assert "SSH tunnel" in warning and "Security" in warning


def test_pages_ask_for_the_login_when_oidc_is_configured(app_db, open_page):
    at = open_page("pages/1_Eval_sets.py")
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.title and not at.radio  # nothing of the page before the login
