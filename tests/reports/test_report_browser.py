"""The HTML report in headless Chromium: plots render from the inlined plotly.js with every network request
blocked (none may even be attempted), and no script from the untrusted texts runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.app_server import CHROMIUM, CHROMIUM_ARGS, require_chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "artifacts" / "screenshots" / "report.png"


@pytest.mark.browser
@pytest.mark.slow
def test_html_report_renders_offline(comparison):
    require_chromium()
    from playwright.sync_api import sync_playwright

    html_path = comparison.files["html"]
    attempted: list[str] = []
    errors: list[str] = []
    dialogs: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            attempted.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", route)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(html_path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            # ROC, PR, reliability, 2 confusion matrices, slices, retrieval, 2 embedding maps
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 9",
                                   timeout=60_000)
            assert page.locator(".js-plotly-plot").count() >= 9
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() > 0  # curves were drawn
            assert page.locator("img.thumb").count() > 0
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert "<script>alert(1)</script>" in page.inner_text("body")  # shown as text, not run
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#curves").scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert attempted == [], f"the report tried to load: {attempted}"
    assert errors == [] and dialogs == []
    assert SCREENSHOT.stat().st_size > 10_000
