"""Browser flow on a real server: the one-click demo survives a reload and ends with results; a strict import
of a CSV with a bad row shows the report. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, running_app
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"
DEMO_PRODUCTS = 500  # the quick demo, Home's default size (workbench.demo.QUICK_PRODUCTS)
DEMO_TIMEOUT_S = 600


@pytest.fixture
def server(tmp_path: Path):
    """``streamlit run Home.py`` on a free port with a fresh database; killed afterwards."""
    started = time.monotonic()
    try:
        with running_app(tmp_path / "wb.duckdb", tmp_path / "server.log") as url:
            yield {"url": url, "db": tmp_path / "wb.duckdb", "started": started, "log": tmp_path / "server.log"}
    finally:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "server.log").write_bytes((tmp_path / "server.log").read_bytes()[-200_000:])


@pytest.fixture
def browser_page():
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def _idle(page) -> None:
    """Wait until the script run has finished (the toolbar's 'Stop' button is gone), for tidy screenshots."""
    try:
        page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=30_000)
    except Exception:  # only cosmetic; the assertions do not depend on it
        pass
    time.sleep(0.5)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _bad_csv(folder: Path) -> Path:
    (folder / "img").mkdir(parents=True)
    lines = ["image_path,title,sku,category"]
    for i, rgb in enumerate([(200, 30, 30), (30, 40, 200), (30, 160, 40), (230, 210, 40)]):
        Image.new("RGB", (48, 40), rgb).save(folder / "img" / f"p{i}.png")
        lines.append(f"img/p{i}.png,{'红色 马克杯' if i % 2 else 'blue cotton hat'} {i},sku-{i},mug")
    lines.append("img/missing.png,orange mug,sku-9,mug")
    path = folder / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_demo_survives_reload_then_strict_import_report(server, browser_page, tmp_path):
    from workbench.evaluation.aggregate import load_metrics
    from workbench.run.runner import list_runs

    page, url = browser_page, server["url"]
    timings: dict[str, float] = {"server_healthy_s": round(time.monotonic() - server["started"], 1)}
    page.goto(url)
    page.get_by_role("button", name="Run the demo").wait_for()
    _shot(page, "01_home_empty")

    clicked = time.monotonic()
    page.get_by_role("button", name="Run the demo").click()
    progress = page.get_by_text(f"on demo-{DEMO_PRODUCTS}-s0:").first
    progress.wait_for(timeout=60_000)
    _shot(page, "02_demo_progress")

    page.reload()
    page.get_by_text(f"on demo-{DEMO_PRODUCTS}-s0:").first.wait_for(timeout=60_000)  # still progressing
    _shot(page, "03_after_reload")

    page.wait_for_function(
        f"() => !document.body.innerText.includes('on demo-{DEMO_PRODUCTS}-s0:')", timeout=DEMO_TIMEOUT_S * 1000)
    timings["click_to_results_s"] = round(time.monotonic() - clicked, 1)
    timings["start_to_results_s"] = round(time.monotonic() - server["started"], 1)
    page.get_by_text("Next steps").wait_for()
    _idle(page)
    _shot(page, "04_demo_results")
    runs = list_runs(db=server["db"])
    records = runs[["config", "status", "error"]].to_dict("records")
    failed = runs[runs["status"] == "failed"]
    # Known library race (DuckDB per-call connections from several threads of one process; see the issue note):
    # tolerated with a warning so it stays visible, any other failure is a bug.
    assert all("python_arrow_scan" in str(e) for e in failed["error"]), records
    if len(failed):
        warnings.warn(f"demo run(s) hit the DuckDB register race: {records}", stacklevel=1)
    assert len(runs) == 3 and (runs["status"] == "done").sum() >= 2, records
    for run_id in runs.loc[runs["status"] == "done", "run_id"]:
        assert "pair/roc_auc" in set(load_metrics(run_id, db=server["db"])["name"])

    csv = _bad_csv(tmp_path / "shop")
    page.goto(f"{url}/Eval_sets")
    page.get_by_role("radiogroup").get_by_text("Import").click()
    page.get_by_text("A file or folder on the server").click()
    path_input = page.get_by_label("Path on the server")
    path_input.fill(str(csv))
    path_input.press("Enter")
    page.get_by_label("Eval set name").wait_for()
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Strict mode: nothing was imported because 1 row(s) have errors").wait_for(timeout=60_000)
    page.get_by_text("Rows with errors: 5").wait_for()
    _idle(page)
    _shot(page, "05_strict_import_report")

    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=1))
    print("browser timings:", timings)
