"""AppTest of the Mismatches page: the gallery and its filters, marking a label error, recomputing metrics."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "6_Mismatches.py"


def test_mismatch_gallery_filter_and_mark_label_error(app_env):
    from workbench.evaluation.aggregate import load_metrics
    from workbench.evaluation.label_errors import list_label_errors
    from workbench.evaluation.mismatches import mismatches

    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    assert not at.exception
    at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
    at.radio(key="mismatch_kind").set_value("hardest_negative").run()
    at.selectbox(key="mismatch_pair_kind").set_value("attribute").run()
    assert not at.exception
    cards = [c.value for c in at.caption if c.value.startswith("score")]
    assert cards and all("attribute" in c and "swapped" in c for c in cards)
    at.selectbox(key="mismatch_pair_kind").set_value("random").run()
    others = [c.value for c in at.caption if c.value.startswith("score")]
    assert others and not any("swapped" in c or "nan" in c for c in others)  # no swap, no "swapped nan"
    at.selectbox(key="mismatch_pair_kind").set_value("attribute").run()
    marks = [b for b in at.button if b.label == "Mark as label error"]
    assert len(marks) == len(cards)
    expected = mismatches(app_env.kwc_run, db=app_env.path, kind="hardest_negative", pair_kind="attribute",
                          limit=12)
    first = expected["pair_id"].iloc[0]
    at.button(key=f"mismatch_mark_{first}").click().run()
    assert not at.exception
    assert list_label_errors(app_env.eval_set, db=app_env.path)["pair_id"].tolist() == [first]
    assert any(first in s.value for s in at.success)
    assert at.button(key=f"mismatch_unmark_{first}")  # shown with a badge and an Unmark button now

    before_metrics = load_metrics(app_env.kwc_run, db=app_env.path)
    at.checkbox(key="mismatch_hide_marked").check().run()
    assert f"mismatch_mark_{first}" not in {b.key for b in at.button}
    at.toggle(key=f"mismatch_exclude_{app_env.kwc_run}").set_value(True).run()
    assert not at.exception
    assert any("Recorded with the run's metrics: 1 pairs marked as label errors excluded" in c.value
               for c in at.caption)
    table = next(d.value for d in at.dataframe if "before 95% CI" in d.value.columns).set_index("metric")
    before = before_metrics.set_index("name")
    after = load_metrics(app_env.kwc_run, db=app_env.path).set_index("name")
    for name in ("pair/accuracy", "pair/roc_auc"):
        assert table.at[name, "before"] == before.at[name, "value"] and table.at[name, "after"] == after.at[name,
                                                                                                          "value"]
        assert abs(table.at[name, "change"] - (after.at[name, "value"] - before.at[name, "value"])) < 1e-12
        assert table.at[name, "before 95% CI"].startswith("[") and table.at[name, "after 95% CI"].startswith("[")
    assert table.at["pair/accuracy", "pairs after"] == table.at["pair/accuracy", "pairs before"] - 1


def test_retrieval_failures_section(app_env):
    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
    at.radio(key="mismatch_direction").set_value("i2t").run()
    assert not at.exception
    assert any("rank of the true item" in c.value for c in at.caption)


def test_likely_label_errors_list_and_one_click_marking(app_env):
    from workbench.evaluation.label_errors import label_error_candidates, list_label_errors

    at = AppTest.from_file(str(PAGE), default_timeout=90).run()
    at.selectbox(key="mismatch_run").set_value(app_env.kwc_run).run()
    at.multiselect(key="mismatch_le_runs").set_value([app_env.kw_run]).run()
    at.selectbox(key="mismatch_le_split").set_value("test").run()
    assert not [b for b in at.button if b.key and b.key.startswith("mismatch_le_mark_")]  # behind the toggle
    at.toggle(key="mismatch_le_show").set_value(True).run()
    assert not at.exception
    expected = label_error_candidates([app_env.kwc_run, app_env.kw_run], db=app_env.path, top=12, split="test")
    marks = [b.key for b in at.button if b.key and b.key.startswith("mismatch_le_mark_")]
    assert sorted(marks) == sorted(f"mismatch_le_mark_{p}" for p in expected["pair_id"])  # cards fill 4 columns
    ranked = {c.value.split(" · ")[0]: c.value for c in at.caption if " · score " in c.value}
    assert sorted(ranked) == sorted(f"rank {r}" for r in range(1, 13))
    assert ranked["rank 1"].startswith(f"rank 1 · score **{expected['score'].iloc[0]:.3f}**")
    assert any(c.value.startswith("neighbourhood ") for c in at.caption)

    first = expected["pair_id"].iloc[0]
    at.button(key=f"mismatch_le_mark_{first}").click().run()
    assert not at.exception
    assert list_label_errors(app_env.eval_set, db=app_env.path)["pair_id"].tolist() == [first]
    assert any(first in s.value for s in at.success)
    at.button(key=f"mismatch_le_unmark_{first}").click().run()
    assert list_label_errors(app_env.eval_set, db=app_env.path).empty
    assert at.button(key=f"mismatch_le_mark_{first}")


def test_swap_note_only_where_a_swap_exists():
    from workbench.ui.mismatches import swap_note

    assert swap_note({"swapped_attribute": float("nan")}) == "" and swap_note({"swapped_attribute": None}) == ""
    assert swap_note({"swapped_attribute": "color"}) == " · swapped color"
    assert swap_note({"swapped_attribute": "color", "swap_from": "red", "swap_to": "blue"}) == (
        r" · swapped color\: red → blue")  # markdown-escaped: the values are untrusted
