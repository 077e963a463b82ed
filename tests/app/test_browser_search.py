"""Browser flow of the Search page: a real `streamlit run` server driven by headless Chromium (Playwright).

Type a query, press Search, and see both runs' results side by side (latency, method, thumbnails). The screenshot
goes to artifacts/screenshots/.
"""

from __future__ import annotations

import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from two_runs import build, copy_db

    db = copy_db(build(tmp_path_factory), tmp_path_factory.mktemp("browser-search"))
    with running_app(db.path, tmp_path_factory.getbasetemp() / "streamlit-search.log") as url:
        yield url, db


def test_a_typed_query_shows_two_runs_side_by_side(server):
    from playwright.sync_api import sync_playwright

    url, _ = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/Search", wait_until="domcontentloaded")
            query = page.get_by_label("Query")
            query.wait_for(timeout=90_000)
            query.fill("red cotton T-shirt")
            page.get_by_role("button", name="Search").click()
            metrics = page.locator('[data-testid="stMetric"]')
            metrics.nth(1).wait_for(timeout=120_000)
            assert metrics.count() == 2
            assert page.get_by_text("Models ready", exact=False).count() == 2
            assert page.get_by_text("cosine head", exact=False).count() >= 1
            assert page.get_by_text("contrastive head", exact=False).count() >= 1
            columns = page.locator('[data-testid="stColumn"]:has([data-testid="stMetric"])')
            assert columns.count() == 2
            for i in range(2):
                columns.nth(i).locator('[data-testid="stImage"]').first.wait_for(timeout=30_000)
                assert columns.nth(i).locator('[data-testid="stImage"]').count() == 10
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "search_side_by_side.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
