"""AppTest of the Search page: a typed query answered by two runs side by side, and an eval-set title whose true
product's rank agrees with the library."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "8_Search.py"


def _hit_captions(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("#")]


def test_a_typed_query_is_answered_by_two_runs_side_by_side(app_env):
    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    assert not at.exception
    assert any("Enter a query" in i.value for i in at.info)
    at.multiselect(key="search_runs").set_value([app_env.kw_run, app_env.kwc_run])
    at.text_input(key="search_text").input("red cotton T-shirt")
    at.number_input(key="search_k").set_value(4)
    at.button[0].click().run()  # the form's Search button
    assert not at.exception, at.exception
    hits = _hit_captions(at)
    assert len(hits) == 8  # k images from each of the two runs
    assert sorted(h.split(" · ")[0] for h in hits) == sorted(f"#{r}" for r in (1, 2, 3, 4) for _ in range(2))
    assert len(at.metric) == 2 and all(m.label == "Latency" and m.value.endswith(" ms") for m in at.metric)
    captions = "\n".join(c.value for c in at.caption)
    assert "cosine head" in captions and "contrastive head" in captions
    assert captions.count("test split") == 2
    assert "query words: red · cotton · t · shirt" in captions


def test_an_eval_set_title_shows_its_true_products_rank(app_env):
    from workbench.run.search import gallery_items, open_searcher

    _, texts = gallery_items(app_env.eval_set, "test", db=app_env.path)
    text_id = texts["text_id"].iloc[0]
    expected = open_searcher(app_env.kwc_run, db=app_env.path).search_item(text_id, k=3)

    at = AppTest.from_file(str(PAGE), default_timeout=120).run()
    at.multiselect(key="search_runs").set_value([app_env.kwc_run])
    at.radio(key="search_mode").set_value("title").run()
    at.selectbox(key="search_item_text").set_value(text_id)
    at.number_input(key="search_k").set_value(3)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any(c.value == f"true product {expected.true_product}: rank **{expected.true_rank}**" for c in at.caption)
    shown = dict(h.split(" · ")[:2] for h in _hit_captions(at))  # thumbnails fill a grid, so order by rank
    assert shown == {f"#{r}": f"score {s:.3f}" for r, s in zip(expected.hits["rank"], expected.hits["score"],
                                                                 strict=True)}
