"""The explanation panel: escaped words coloured by attribution, and on a Mismatches card the run's overlay and
highlighted words behind an Explain button; a run that cannot be restored or may not run in the app is an error
message, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench import store
from workbench.evaluation.mismatches import mismatches
from workbench.explain import display_explanation
from workbench.run.restore import RestoreError, restore_run_models
from workbench.ui.explain import highlighted_words, top_words

PAGE = Path(__file__).resolve().parents[2] / "pages" / "6_Mismatches.py"


def test_words_are_escaped_and_coloured_by_sign_and_strength():
    tokens = [("red", 0.8), ("*sale*", -0.5), ("口红", 0.2), ("cap", 0.01), ("x_1", -0.03)]
    assert highlighted_words(tokens) == (r":red-background[**red**] :blue-background[**\*sale\***] "
                                         r":red-background[口红] cap x\_1")
    assert top_words(tokens, 2) == r"red +0.800 · \*sale\* -0.500"
    assert highlighted_words([("no", 0.0), ("effect", 0.0)]) == "no effect"
    assert top_words([("no", 0.0)]) == ""


@pytest.fixture
def open_false_negatives(app_env):
    """The Mismatches page on the contrastive keyword run's false negatives."""

    def open_page() -> AppTest:
        at = AppTest.from_file(str(PAGE), default_timeout=120).run()
        at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
        at.radio(key="mismatch_kind").set_value("false_negative").run()
        assert not at.exception
        return at

    return open_page


def _overlays(at: AppTest) -> list:
    """The PNG images on the page (thumbnails are JPEGs)."""
    return [i for i in at.get("image") if any(url.endswith(".png") for url in i.value)]


def _explained_card(app_env) -> tuple[str, object]:
    """A false negative on the first page whose text has a keyword that moves the score, and its explanation."""
    models = restore_run_models(app_env.kwc_run, db=app_env.path)
    for pair_id in mismatches(app_env.kwc_run, db=app_env.path, kind="false_negative", limit=12)["pair_id"]:
        expected = display_explanation(models, pair_id)
        if any(value for _, value in expected.tokens):
            return pair_id, expected
    raise AssertionError("no false negative with a keyword in its text")


def test_explain_button_on_a_card_shows_the_overlay_and_highlighted_words(app_env, open_false_negatives):
    pair_id, expected = _explained_card(app_env)
    at = open_false_negatives()
    button = f"mismatch_explain_{app_env.kwc_run}_{pair_id}"
    assert not any(c.value.startswith("red raises the score") for c in at.caption)  # nothing before the click
    at.button(key=button).click().run()
    assert not at.exception and not at.error
    overlays = _overlays(at)
    assert len(overlays) == 1
    assert overlays[0].captions == [f"keyword_color_map + keyword_terms · score {expected.score:.3f}"]
    keyword = max(expected.tokens, key=lambda t: abs(t[1]))[0]
    assert any(f":red-background[**{keyword}**]" in m.value for m in at.markdown)
    assert any(c.value.startswith(f"red raises the score, blue lowers it · strongest: {keyword} +")
               for c in at.caption)

    at.run()
    assert len(_overlays(at)) == 1  # stays open on the next rerun (the button is no longer pressed)
    at.button(key=f"mismatch_explain_hide_{app_env.kwc_run}_{pair_id}").click().run()
    assert not _overlays(at)
    assert at.button(key=button)


def test_a_failed_restore_is_an_error_message_not_a_traceback(app_env, open_false_negatives, monkeypatch):
    from workbench.run import search

    def fail(run_id, **kwargs):
        raise RestoreError(f"Eval set 'tiny' changed since run {run_id}; re-run the config to explain it.")

    monkeypatch.setattr(search, "restore_models", fail)
    at = open_false_negatives()
    pair_id = mismatches(app_env.kwc_run, db=app_env.path, kind="false_negative", limit=1)["pair_id"].iloc[0]
    at.button(key=f"mismatch_explain_{app_env.kwc_run}_{pair_id}").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"Explaining the pair failed: Eval set 'tiny' changed since run {app_env.kwc_run}; re-run the config to "
        "explain it."]


def test_a_run_whose_config_loads_plugins_is_not_restored_from_the_app(app_env, open_false_negatives, monkeypatch):
    from workbench.run import search

    with store.connect(app_env.path) as con:
        config = json.loads(con.execute("SELECT config FROM runs WHERE run_id = ?", [app_env.kwc_run]).fetchone()[0])
        config["plugins"] = ["my_encoders.py"]
        con.execute("UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config), app_env.kwc_run])
    restores = []
    monkeypatch.setattr(search, "restore_models", lambda *args, **kwargs: restores.append(args))
    monkeypatch.delenv("WORKBENCH_ALLOW_REMOTE_CODE", raising=False)
    at = open_false_negatives()
    pair_id = mismatches(app_env.kwc_run, db=app_env.path, kind="false_negative", limit=1)["pair_id"].iloc[0]
    at.button(key=f"mismatch_explain_{app_env.kwc_run}_{pair_id}").click().run()
    assert not at.exception and not restores
    assert len(at.error) == 1
    assert "plugins = ['my_encoders.py']" in at.error[0].value and "WORKBENCH_ALLOW_REMOTE_CODE=1" in at.error[0].value
