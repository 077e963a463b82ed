"""Browser flows of the analysis pages: a real `streamlit run` server driven by headless Chromium (Playwright).

Compare (leaderboard and curves visible), Embedding space (compute PCA → plot visible), Mismatches (gallery
visible). Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from two_runs import build, copy_db

    db = copy_db(build(tmp_path_factory), tmp_path_factory.mktemp("browser-analysis"))
    with running_app(db.path, tmp_path_factory.getbasetemp() / "streamlit-analysis.log") as url:
        yield url, db


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def test_compare_shows_leaderboard_and_curves(server, page):
    url, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{url}/Compare", wait_until="domcontentloaded")
    page.get_by_text("Leaderboard", exact=True).wait_for(timeout=90_000)
    page.locator('[data-testid="stTable"]').first.wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 2
    page.screenshot(path=str(SHOTS / "analysis_compare.png"), full_page=False)
    _no_exception(page)


def test_embedding_space_computes_pca_plot(server, page):
    url, _ = server
    page.goto(f"{url}/Embedding_space", wait_until="domcontentloaded")
    page.get_by_text("PCA", exact=True).click(timeout=60_000)
    page.get_by_role("button", name="Compute projection").click()
    page.get_by_text("PCA on all", exact=False).wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SHOTS / "analysis_embedding.png"), full_page=False)
    _no_exception(page)


def test_mismatches_gallery(server, page):
    url, _ = server
    page.goto(f"{url}/Mismatches", wait_until="domcontentloaded")
    page.get_by_role("button", name="Mark as label error").first.wait_for(timeout=90_000)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "analysis_mismatches.png"), full_page=False)
    _no_exception(page)
