"""The PDF people read in a meeting, checked with pdfplumber: every character of every page lies inside its page,
three runs fit in at most ten pages, page 1 is the summary, text is in readable proportional fonts (CJK through
Noto Sans CJK when installed), and the chosen format is the only report written."""

from __future__ import annotations

import shutil

import pdfplumber
import pytest
from matplotlib import font_manager

from workbench.config import config_from_dict
from workbench.reports import write_report
from workbench.reports.pdf_report import text_width, wrap
from workbench.run import runner

MIN_UPRIGHT_PT = 6.5


@pytest.fixture(scope="module")
def three_runs(report_db, tmp_path_factory):
    """The report database's two runs plus a third (an MLP head), on a private copy."""
    folder = tmp_path_factory.mktemp("pdf-three")
    db = folder / "wb.duckdb"
    shutil.copy(report_db.path, db)
    config = config_from_dict({"name": "kw-mlp", "image_encoder": {"type": "keyword_image"},
                               "text_encoder": {"type": "keyword_text"},
                               "fusion": {"type": "concat_mlp", "epochs": 5}})
    third = runner.run(config, report_db.eval_set, db=db, device="cpu", name="MLP head, 5 epochs")
    assert runner.get_run(third, db=db)["status"] == "done"
    return db, [report_db.cosine, report_db.contrastive, third]


@pytest.fixture(scope="module")
def pdf(three_runs, tmp_path_factory):
    db, run_ids = three_runs
    out = tmp_path_factory.mktemp("pdf-out")
    path = write_report(run_ids, fmt="pdf", out=out / "meeting.pdf", db=db)
    with pdfplumber.open(path) as document:
        pages = [(page.width, page.height, page.chars, page.extract_text() or "") for page in document.pages]
    return path, run_ids, pages


def test_every_character_lies_inside_its_page_and_three_runs_fit_in_ten_pages(pdf):
    _, _, pages = pdf
    assert 2 <= len(pages) <= 10
    for number, (width, height, chars, _) in enumerate(pages, start=1):
        assert chars, f"page {number} has no text"
        outside = [c["text"] for c in chars
                   if c["x0"] < 0 or c["x1"] > width or c["top"] < 0 or c["bottom"] > height]
        assert not outside, f"page {number}: {''.join(outside)[:80]!r} runs off the page"


def test_page_one_is_the_summary_with_cis_significance_legend_and_curves(pdf):
    _, run_ids, pages = pdf
    text = pages[0][3]
    assert "pair/roc_auc" in text and "baseline" in text and "p Holm" in text and "[" in text
    assert all(run_id in text for run_id in run_ids)  # the legend gives each letter its full run id
    assert "MLP head, 5 epochs" in text  # a run's name leads its label
    assert "ROC (test)" in text and "Precision–recall (test)" in text


def test_text_is_readable_and_chinese_gets_a_cjk_font(pdf):
    _, _, pages = pdf
    chars = [c for _, _, page_chars, _ in pages for c in page_chars]
    upright = [c for c in chars if c["upright"] and c["text"].strip()]
    assert min(c["size"] for c in upright) >= MIN_UPRIGHT_PT
    assert not [c for c in chars if "Mono" in c["fontname"]]  # no monospaced tables
    installed = {f.name for f in font_manager.fontManager.ttflist}
    if "Noto Sans CJK SC" not in installed and "Noto Sans CJK JP" not in installed:
        pytest.skip("no CJK font installed")
    cjk = [c for c in chars if "\u4e00" <= c["text"] <= "\u9fff"]
    assert cjk and all("CJK" in c["fontname"] for c in cjk)


def test_only_the_chosen_format_is_written(three_runs, tmp_path):
    db, run_ids = three_runs
    path = write_report(run_ids[:1], fmt="pdf", out=tmp_path / "only.pdf", db=db)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([path.name, f"only.{run_ids[0]}.config.toml"])


@pytest.mark.parametrize("text", ["a8f5f167f44f4964e6c998dee827110c" * 3, "复古格纹羊毛围巾加厚保暖冬季女款" * 4,
                                  "Red cotton shirt with a long sleeve and a button-down collar " * 3])
def test_wrapped_lines_fit_their_width(text):
    lines = wrap(text, 120, 8)
    assert len(lines) > 1 and all(text_width(line, 8) <= 120 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    short = wrap(text, 120, 8, max_lines=2)
    assert len(short) == 2 and short[-1].endswith("…")
