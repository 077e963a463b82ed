"""Configurations page: build from the registries, preview, save, reload, and the grid kept for the Runs page."""

from __future__ import annotations

import tomllib


def test_build_save_and_reload_a_config(app_db, open_page, by_label, page_text):
    from workbench.config import load_config

    at = open_page("pages/2_Configurations.py")
    at.run()
    assert not at.exception
    at.text_input(key="configs_name").input("page-kw")
    at.selectbox(key="configs_image_encoder").set_value("keyword_image")
    at.selectbox(key="configs_text_encoder").set_value("keyword_text")
    at.selectbox(key="configs_fusion").set_value("cosine")
    at.selectbox(key="configs_policy").set_value("target_precision").run()
    assert "Multi-hot dominant colour names" in page_text(at)  # the plug-in's description
    at.text_area(key="configs_image_options").input('{"min_share": 0.3, "nope": 1}').run()
    assert "Unknown image encoder option(s) ['nope']" in " ".join(e.value for e in at.error)
    at.text_area(key="configs_image_options").input('{"min_share": 0.3').run()
    assert "not valid JSON" in " ".join(e.value for e in at.error)
    at.text_area(key="configs_image_options").input('{"min_share": 0.3}')
    at.number_input(key="configs_target").set_value(0.8)
    at.number_input(key="configs_seed").set_value(7).run()
    assert not at.error
    preview = tomllib.loads(at.code[0].value)
    assert preview["image_encoder"] == {"type": "keyword_image", "min_share": 0.3}
    assert preview["threshold"] == {"policy": "target_precision", "target": 0.8}

    by_label(at.button, "Save configuration").click().run()
    assert "Saved page-kw.toml" in " ".join(s.value for s in at.success)
    saved = load_config(app_db.path.parent / "configs" / "page-kw.toml")
    assert saved.seed == 7 and saved.fusion == {"type": "cosine"} and saved.threshold["target"] == 0.8
    assert "saved: page-kw" in at.multiselect(key="configs_grid").value  # queued for the Runs page

    by_label(at.button, "Save configuration").click().run()  # no silent overwrite
    assert "already exists" in " ".join(e.value for e in at.error)

    at.selectbox(key="configs_source").set_value("minilm-cnn-contrastive")
    by_label(at.button, "Load into the builder").click().run()
    assert at.text_input(key="configs_name").value == "minilm-cnn-contrastive"
    assert at.selectbox(key="configs_fusion").value == "contrastive"
    at.selectbox(key="configs_source").set_value("saved: page-kw")
    by_label(at.button, "Load into the builder").click().run()
    assert at.selectbox(key="configs_image_encoder").value == "keyword_image"
    assert at.number_input(key="configs_seed").value == 7
    assert at.selectbox(key="configs_policy").value == "target_precision"
    assert not at.exception


def test_grid_selection_reaches_the_runs_page(app_db, open_page):
    at = open_page("Home.py")
    at.switch_page("pages/2_Configurations.py").run()
    at.multiselect(key="configs_grid").set_value(["saved: kw", "tfidf-colorhist-cca"]).run()
    assert at.session_state["configs_selection"] == ["saved: kw", "tfidf-colorhist-cca"]
    at.switch_page("pages/3_Runs.py").run()
    assert not at.exception
    runs_configs = [m for m in at.multiselect if m.label == "Configurations"][0]
    assert runs_configs.value == ["saved: kw", "tfidf-colorhist-cca"]
