"""Browser flow on a real server: upload a ZIP (table + images) -> preview of its image paths -> import -> a run of
a tiny saved config (keyword encoders, cosine head) -> rename and tag the run -> find it by tag on
Compare -> open a product's detail view. Screenshots go to artifacts/screenshots/import_runs_*.png."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, running_app
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "screenshots"
WAIT_MS = 120_000
RUN_WAIT_MS = 600_000  # the machine is shared: a run of a few seconds may wait minutes for a core
COLORS = {"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 160, 40), "yellow": (230, 210, 40),
          "black": (10, 10, 10), "white": (245, 245, 245), "pink": (240, 150, 190), "gray": (128, 128, 128)}
KINDS = ("mug", "hat", "lamp")


def _archive(folder: Path) -> Path:
    """24 products (colour × kind) as a CSV plus PNGs, zipped with paths relative to the archive."""
    buffer = io.BytesIO()
    lines = ["image_path,title,sku,category"]
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, (kind, (name, rgb)) in enumerate((k, c) for k in KINDS for c in COLORS.items()):
            image = io.BytesIO()
            Image.new("RGB", (64, 48), rgb).save(image, format="PNG")
            archive.writestr(f"images/{kind}-{name}.png", image.getvalue())
            lines.append(f"images/{kind}-{name}.png,{name} {kind},sku-{i},{kind}")
        archive.writestr("catalogue.csv", "\n".join(lines) + "\n")
    path = folder / "my catalogue.zip"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def server(tmp_path: Path):
    """A fresh database with one saved configuration the Runs page offers as 'saved: tiny'."""
    from workbench.config import config_from_dict, dump_config_toml

    db = tmp_path / "wb.duckdb"
    (tmp_path / "configs").mkdir()
    config = config_from_dict({"name": "tiny", "image_encoder": {"type": "keyword_image"},
                               "text_encoder": {"type": "keyword_text"}, "fusion": {"type": "cosine"}})
    (tmp_path / "configs" / "tiny.toml").write_text(dump_config_toml(config), encoding="utf-8")
    with running_app(db, tmp_path / "server.log") as url:
        yield url, db


@pytest.fixture
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


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / f"import_runs_{name}.png"), full_page=True)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def _choose(page, label: str, value: str) -> None:
    """Type ``value`` into the multiselect labelled ``label`` and take the first match (or add it as new)."""
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).first
    box.locator("input").fill(value)
    page.wait_for_timeout(300)
    box.locator("input").press("Enter")
    page.keyboard.press("Escape")


def test_zip_import_run_rename_tag_compare_and_detail(server, page, tmp_path):
    from playwright.sync_api import expect

    from workbench.data.evalsets import get_eval_set_info
    from workbench.run import runner

    url, db = server
    archive = _archive(tmp_path)

    page.goto(f"{url}/Eval_sets")
    page.locator('input[type="file"]').set_input_files(str(archive))
    page.get_by_text("Image paths of the first 8 rows").wait_for()
    page.get_by_text("8 found").wait_for()
    _no_exception(page)
    _shot(page, "01_zip_preview")
    name = page.get_by_label("Eval set name")
    name.fill("zipshop")
    name.press("Enter")
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Imported 'zipshop': 24 products").wait_for()
    _shot(page, "02_imported")
    assert get_eval_set_info("zipshop", db)["source"] == "my catalogue.zip"

    page.goto(f"{url}/Runs")
    _choose(page, "Eval sets", "zipshop")
    _choose(page, "Configurations", "saved: tiny")
    page.get_by_role("button", name="Start").click()
    page.get_by_text("Started 1 run(s)").wait_for()
    finished = re.compile(r"^(done|failed)$")
    page.locator('[data-testid="stMetricValue"]').filter(has_text=finished).first.wait_for(timeout=RUN_WAIT_MS)
    _no_exception(page)
    (run_id,) = runner.list_runs(db=db)["run_id"]
    record = runner.get_run(run_id, db=db)
    assert record["status"] == "done", record["error"]
    page.get_by_text("Training loss").first.wait_for()
    name_box = page.get_by_label("Name", exact=True)
    expect(name_box).to_have_count(1, timeout=WAIT_MS)  # the page's redraw after the run ended has settled
    _shot(page, "03_run_done")

    name_box.fill("zip baseline")
    _choose(page, "Tags", "shortlist")
    page.get_by_role("button", name="Save name, tags and notes").click()
    page.get_by_text("Saved the name, tags and notes").wait_for()
    _shot(page, "04_run_named_and_tagged")
    record = runner.get_run(run_id, db=db)
    assert record["name"] == "zip baseline" and record["tags"] == ["shortlist"]

    page.goto(f"{url}/Compare")
    _choose(page, "Only runs tagged", "shortlist")
    page.locator('[data-testid="stTable"]').get_by_text("R1 · zip baseline").wait_for()  # the leaderboard
    _no_exception(page)
    _shot(page, "05_compare_by_tag")

    page.goto(f"{url}/Eval_sets")
    page.get_by_role("button", name="Details").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Item detail").wait_for()
    dialog.get_by_text("eval set zipshop").wait_for()
    _no_exception(page)
    _shot(page, "06_detail_view")
