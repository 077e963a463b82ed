"""Browser flow on a real server: a box/lasso selection on Embedding space becomes a table, its products are tagged,
a detail view opens from it, and Mismatches filtered by that tag shows exactly the tagged products' pairs.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"
TAG = "lasso-pick"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from two_runs import build, copy_db

    db = copy_db(build(tmp_path_factory), tmp_path_factory.mktemp("browser-selection"))
    with running_app(db.path, tmp_path_factory.getbasetemp() / "streamlit-selection.log") as url:
        yield url, db


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _lasso_left_half(page) -> None:
    """A real lasso drag with the mouse over the left half of the map (plotly's own lasso tool)."""
    plot = page.locator(".js-plotly-plot").first
    plot.hover()
    page.locator('.modebar-btn[data-title="Lasso Select"]').first.click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    path = [(x0 + 2, y0 + 2), (x0 + w * 0.5, y0 + 2), (x0 + w * 0.5, y0 + h - 2), (x0 + 2, y0 + h - 2),
            (x0 + 2, y0 + 3)]
    page.mouse.move(*path[0])
    page.mouse.down()
    for x, y in path[1:]:
        page.mouse.move(x, y, steps=12)
    page.mouse.up()


def test_lasso_tag_detail_then_filter_mismatches_by_tag(server, page):
    from workbench.data.tags import tagged_products
    from workbench.evaluation.mismatches import mismatches
    from workbench.run.runner import list_runs

    url, db = server
    page.goto(f"{url}/Embedding_space", wait_until="domcontentloaded")
    page.get_by_text("PCA", exact=True).click()
    page.get_by_role("button", name="Compute projection").click()
    page.get_by_text("PCA on all", exact=False).wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    page.wait_for_timeout(1500)
    _lasso_left_half(page)
    page.get_by_text("Selected:", exact=False).wait_for()
    page.get_by_role("button", name="Add tag").wait_for()
    page.locator('[data-testid="stDataFrame"]').first.scroll_into_view_if_needed()
    _shot(page, "selection_lasso_table")
    _no_exception(page)

    page.get_by_label("Tag", exact=True).fill(TAG)
    page.get_by_label("Tag", exact=True).press("Enter")
    page.get_by_role("button", name="Add tag").click()
    page.get_by_text(f"Tag '{TAG}' added to", exact=False).wait_for()
    tagged = tagged_products(db.eval_set, TAG, db=db.path)
    assert tagged  # the lasso picked some products

    page.get_by_role("button", name="Open details").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Pairs built from this product", exact=False).wait_for()
    dialog.locator('[data-testid="stImage"]').first.wait_for()
    dialog.locator('[data-testid="stDataFrame"]').nth(1).wait_for()
    _shot(page, "selection_detail_view")
    _no_exception(page)
    dialog.locator("button").filter(has_text="Close").click()  # our button, not the dialog's ×
    dialog.wait_for(state="hidden")

    page.goto(f"{url}/Mismatches", wait_until="domcontentloaded")
    page.get_by_role("button", name="Mark as label error").first.wait_for()
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Tag").click()
    page.get_by_role("option", name=TAG).click()
    runs = list_runs(db=db.path)
    shown_run = runs[runs["status"] == "done"].iloc[0]["run_id"]  # the page's default: the newest finished run
    expected = mismatches(shown_run, db=db.path, tag=TAG, limit=12)
    assert set(expected["image_product"]) <= set(tagged)
    if expected.empty:
        page.get_by_text("No pairs match these filters.").wait_for()
    else:
        page.wait_for_function(
            "n => document.querySelectorAll('[class*=\"st-key-mismatch_detail_\"]').length === n", arg=len(expected))
        keys = page.eval_on_selector_all('[class*="st-key-mismatch_detail_"]', "els => els.map(e => [...e.classList]"
                                         ".find(c => c.startsWith('st-key-mismatch_detail_')))")
        assert {k.removeprefix("st-key-mismatch_detail_") for k in keys} == set(expected["pair_id"])
    _shot(page, "selection_mismatches_by_tag")
    _no_exception(page)
