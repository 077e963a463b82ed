"""Label errors: marks round-trip and show in the mismatch gallery; candidates: the pure signals against
hand-computed cases and a naive oracle, noise injection, the ranking of injected flips on a small stored catalogue,
and the CLI contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench import store
from workbench.evaluation.label_errors import (
    CANDIDATE_COLUMNS,
    SIGNALS,
    combine_signals,
    inject_label_noise,
    label_error_candidates,
    lemon_distance,
    list_label_errors,
    margin_signal,
    mark_label_error,
    opposite_label_probability,
    rank_normalise,
    unmark_label_error,
)
from workbench.evaluation.mismatches import mismatches
from workbench.metrics import pair_metrics

ROOT = Path(__file__).resolve().parents[2]
KEYWORD = {"name": "kw", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}}
CONTRASTIVE = {**KEYWORD, "name": "kwc", "fusion": {"type": "contrastive", "dim": 8, "epochs": 5}}
N_FLIPS = 3  # test positives made non-matches, and as many test random negatives made matches


# ------------------------------------------------------------------------------------------------ pure parts
def test_rank_normalise_hand_case_ties_and_nan():
    out = rank_normalise([3.0, 1.0, np.nan, 3.0, 2.0])
    # finite values 1, 2, 3, 3 -> ranks 1, 2, 3.5, 3.5 -> (rank - 0.5) / 4
    np.testing.assert_allclose(out, [0.75, 0.125, np.nan, 0.75, 0.375])
    assert np.isnan(rank_normalise([np.nan, np.nan])).all()
    with pytest.raises(ValueError, match="one-dimensional"):
        rank_normalise([[1.0, 2.0]])


def test_opposite_label_probability_and_validation():
    np.testing.assert_allclose(opposite_label_probability([0.9, 0.9, 0.2, np.nan], [1, 0, 0, 1]),
                               [0.1, 0.9, 0.2, np.nan])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        opposite_label_probability([1.5], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        opposite_label_probability([0.5], [2])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        opposite_label_probability([0.5, 0.5], [1])


def test_margin_signal_orders_by_distance_to_the_wrong_side():
    # label 0 above the threshold is wrong (score - t > 0); label 1 below it is wrong (t - score > 0)
    scores, thresholds, labels = [0.9, 0.1, 0.2, 0.8, 0.6, 0.7], [0.5, 0.5, 0.5, 0.5, 0.5, 0.3], [0, 0, 1, 1, 0, 1]
    out = margin_signal(scores, thresholds, labels)
    # label 0: signed margins 0.4, -0.4, 0.1 -> ranks 3, 1, 2 of 3; label 1: 0.3, -0.3, -0.4 -> ranks 3, 2, 1 of 3
    np.testing.assert_allclose(out, [5 / 6, 1 / 6, 5 / 6, 1 / 2, 1 / 2, 1 / 6])
    with pytest.raises(ValueError, match="one length"):
        margin_signal([0.1, 0.2], [0.5], [0, 1])


def test_combine_signals_means_the_available_ones():
    out = combine_signals([[0.2, 0.4, np.nan], [np.nan, np.nan, np.nan], [1.0, 0.0, 0.5]])
    np.testing.assert_allclose(out, [0.3, np.nan, 0.5])


def _lemon_oracle(img, txt, ref, k, beta, gamma, tau_1, tau_2):
    """LEMoN's formula written out pair by pair (full sort, no chunking) as the reference."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    d = lambda a, b: 1.0 - float(a @ b)  # noqa: E731
    refs = [s for s in range(len(img)) if ref[s]]
    out = []
    for p in range(len(img)):
        others = [s for s in refs if s != p]
        terms = []
        for query, key, value, other in ((img, img, txt, txt), (txt, txt, img, img)):
            near = sorted(others, key=lambda s: d(query[p], key[s]))[:k]
            terms.append(sum(np.exp(-tau_1 * d(query[p], key[s])) * np.exp(-tau_2 * d(img[s], txt[s]))
                             * d(other[p], value[s]) for s in near) / k)
        out.append(d(img[p], txt[p]) + beta * terms[0] + gamma * terms[1])
    return np.array(out)


@pytest.mark.parametrize("n_reference", [18, 3])  # 3: fewer reference pairs than k, so all others are used
def test_lemon_distance_matches_the_naive_oracle(n_reference: int):
    rng = np.random.default_rng(4)
    img, txt = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    ref = np.zeros(30, dtype=bool)
    ref[rng.permutation(30)[:n_reference]] = True
    params = {"k": 4, "beta": 0.7, "gamma": 1.3, "tau_1": 2.0, "tau_2": 0.5}
    np.testing.assert_allclose(lemon_distance(img, txt, reference=ref, **params),
                               _lemon_oracle(img, txt, ref, **params), rtol=1e-10)
    unweighted = {**params, "tau_1": 0.0, "tau_2": 0.0}
    np.testing.assert_allclose(lemon_distance(img, txt, reference=ref, **unweighted),
                               _lemon_oracle(img, txt, ref, **unweighted), rtol=1e-10)


def test_lemon_distance_hand_case_and_a_mismatched_neighbourhood():
    # Two claimed matches along e1 and e2; the third pair joins an e1 image with an e2 text.
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    img, txt = np.array([e1, e2, e1]), np.array([e1, e2, e2])
    out = lemon_distance(img, txt, reference=[True, True, False], k=1, beta=1.0, gamma=1.0, tau_1=0.0, tau_2=0.0)
    # pair 0: own 0; nearest other image is e2 (pair 1) whose text e2 is at distance 1 from e1; same for texts
    # pair 2: own 1; its image's nearest reference image is pair 0 (text e1, distance 1 from e2); its text's
    # nearest reference text is pair 1 (image e2, distance 1 from e1)
    np.testing.assert_allclose(out, [2.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        lemon_distance(img, txt, reference=[True, True, False], k=0)
    with pytest.raises(ValueError, match="tau_2"):
        lemon_distance(img, txt, reference=[True, True, False], tau_2=-1.0)
    with pytest.raises(ValueError, match="reference must have shape"):
        lemon_distance(img, txt, reference=[True])
    # no reference pair at all: only the pair's own distance is left
    np.testing.assert_allclose(lemon_distance(img, txt, reference=[False] * 3), [0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------- noise injection
def test_inject_label_noise_flip_and_title_swap(catalog_db):
    from workbench.data.evalsets import load_eval_set

    path, name = catalog_db
    with store.connect(path) as con:
        data = load_eval_set(con, name)
    before = data.pairs.set_index("pair_id")
    noisy, flipped = inject_label_noise(data, kind="flip", fraction=0.05, seed=1)
    after = noisy.pairs.set_index("pair_id").loc[before.index]
    changed = before.index[before["label"].to_numpy() != after["label"].to_numpy()]
    assert sorted(changed) == flipped and len(flipped) == round(0.05 * len(before))
    assert inject_label_noise(data, kind="flip", fraction=0.05, seed=1)[1] == flipped  # deterministic

    noisy, swapped = inject_label_noise(data, kind="title_swap", fraction=0.2, seed=1)
    assert swapped and len(swapped) % 2 == 0
    after = noisy.pairs.set_index("pair_id")
    product_of_image = dict(zip(data.images["image_id"], data.images["product_id"], strict=True))
    product_of_text = dict(zip(data.texts["text_id"], data.texts["product_id"], strict=True))
    for pair_id in swapped:
        row = after.loc[pair_id]
        assert row["label"] == 1 and before.at[pair_id, "label"] == 1
        assert product_of_text[row["text_id"]] != product_of_image[row["image_id"]]
    assert not after[["image_id", "text_id"]].duplicated().any()
    untouched = after.index.difference(swapped)
    assert (after.loc[untouched, "text_id"] == before.loc[untouched, "text_id"]).all()
    with pytest.raises(ValueError, match="allowed"):
        inject_label_noise(data, kind="shuffle")


# ------------------------------------------------------------------------------------- stored catalogue + runs
@dataclass(frozen=True)
class NoisyDB:
    path: Path
    eval_set: str
    kw_run: str
    kwc_run: str
    flipped: tuple[str, ...]


def _colour_catalogue(root: Path, n_products: int = 60) -> Path:
    """Products of one or two colours: an image of each colouring (seeded pixel noise keeps the bytes distinct)
    and a title naming its colours, so the keyword encoders see exactly what the titles say."""
    from workbench.models.encoders import COLOR_CENTROIDS

    colours = list(COLOR_CENTROIDS)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_products):
        first = colours[i % len(colours)]
        second = colours[(3 * i + 1) % len(colours)]
        second = second if second != first else colours[(i + 5) % len(colours)]
        for j, (names, title) in enumerate((((first,), f"{first} mug number {i}"),
                                            ((first, second), f"{first} and {second} mug model {i}"))):
            pixels = np.empty((48, 48, 3))
            pixels[:] = COLOR_CENTROIDS[names[0]]
            if len(names) > 1:
                pixels[:, 30:] = COLOR_CENTROIDS[names[1]]
            pixels += rng.normal(0, 6, pixels.shape)
            name = f"p{i:03d}-{j}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name)
            rows.append({"image_path": name, "title": title, "product_id": f"p{i:03d}",
                         "category": "mug" if i % 2 else "cup"})
    source = root / "items.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    return source


@pytest.fixture(scope="module")
def noisy_db(tmp_path_factory: pytest.TempPathFactory) -> NoisyDB:
    """A 60-product colour catalogue with 2 * N_FLIPS test labels flipped, then a keyword/cosine run and a
    keyword/contrastive run made on the noisy labels (treat as read-only)."""
    from workbench.config import config_from_dict
    from workbench.data.evalsets import import_eval_set
    from workbench.run import runner

    root = tmp_path_factory.mktemp("label-errors")
    path = root / "wb.duckdb"
    import_eval_set(_colour_catalogue(root), "colours", db=path, negatives=("random",), seed=0)
    with store.connect(path) as con:
        test = store.query_frame(con, "SELECT pair_id, pair_kind FROM pairs WHERE split = 'test' ORDER BY pair_id")
        flipped = (list(test.loc[test["pair_kind"] == "positive", "pair_id"][:N_FLIPS])
                   + list(test.loc[test["pair_kind"] == "random", "pair_id"][:N_FLIPS]))
        con.execute("UPDATE pairs SET label = 1 - label WHERE list_contains(?, pair_id)", [flipped])
    kw, kwc = (runner.run(config_from_dict(c), "colours", db=path, device="cpu") for c in (KEYWORD, CONTRASTIVE))
    return NoisyDB(path, "colours", kw, kwc, tuple(sorted(flipped)))


def _auc(table: pd.DataFrame, column: str, flipped) -> float:
    have = table[column].notna()
    y = table.loc[have, "pair_id"].isin(flipped).astype(int).to_numpy()
    return pair_metrics(y, table.loc[have, column].to_numpy(), threshold=0.5)["roc_auc"]


def test_injected_flips_rank_above_clean_pairs(noisy_db):
    table = label_error_candidates([noisy_db.kw_run, noisy_db.kwc_run], db=noisy_db.path, top=None, split="test")
    assert list(table.columns) == list(CANDIDATE_COLUMNS)
    assert len(table) == 48
    # a text left with no test positive (a flipped positive's) is outside the stored gallery: no neighbourhood
    assert table["neighbourhood"].notna().sum() >= 44
    ranks = table.loc[table["pair_id"].isin(noisy_db.flipped), "rank"]
    assert len(ranks) == 2 * N_FLIPS and ranks.max() <= 10, sorted(ranks)  # all six in the top 10 of 48
    assert _auc(table, "score", noisy_db.flipped) >= 0.95
    assert _auc(table, "neighbourhood", noisy_db.flipped) >= 0.95
    single = label_error_candidates(noisy_db.kw_run, db=noisy_db.path, top=None, split="test")
    for signal in SIGNALS:
        assert _auc(single, signal, noisy_db.flipped) >= 0.9, signal


def test_ranking_is_sorted_filter_invariant_and_deterministic(noisy_db):
    runs = [noisy_db.kw_run, noisy_db.kwc_run]
    everything = label_error_candidates(runs, db=noisy_db.path, top=None)
    assert list(everything["rank"]) == list(range(1, len(everything) + 1))
    keys = list(zip(-everything["score"], everything["pair_id"], strict=True))
    assert keys == sorted(keys)  # descending score, ties by pair_id
    assert everything.loc[everything["split"] != "test", "neighbourhood"].isna().all()
    train = everything[everything["split"] != "test"]
    np.testing.assert_allclose(train["score"], train[["disagreement", "margin"]].mean(axis=1))
    test = label_error_candidates(runs, db=noisy_db.path, top=None, split="test").set_index("pair_id")
    same = everything.set_index("pair_id").loc[test.index]
    np.testing.assert_allclose(same[["score", *SIGNALS]].to_numpy(), test[["score", *SIGNALS]].to_numpy())
    top = label_error_candidates(runs, db=noisy_db.path, top=5)
    pd.testing.assert_frame_equal(top, everything.head(5))
    assert (label_error_candidates(runs, db=noisy_db.path, top=0)).empty


def test_runs_of_two_eval_sets_or_unfinished_runs_are_refused(noisy_db, tmp_path: Path):
    path = tmp_path / "copy.duckdb"
    shutil.copy(noisy_db.path, path)
    with store.connect(path) as con:
        for run_id, eval_set, status in (("other", "elsewhere", "done"), ("busy", "colours", "running")):
            con.execute("INSERT INTO runs (run_id, eval_set, status, created_at) VALUES (?, ?, ?, ?)",
                        [run_id, eval_set, status, datetime.now()])
    with pytest.raises(ValueError, match="same eval set"):
        label_error_candidates([noisy_db.kw_run, "other"], db=path)
    with pytest.raises(ValueError, match="not done"):
        label_error_candidates([noisy_db.kw_run, "busy"], db=path)
    with pytest.raises(KeyError, match="nope"):
        label_error_candidates(["nope"], db=path)
    with pytest.raises(ValueError, match="split='dev'"):
        label_error_candidates(noisy_db.kw_run, db=path, split="dev")
    with pytest.raises(ValueError, match="Unknown neighbourhood parameter"):
        label_error_candidates(noisy_db.kw_run, db=path, neighbourhood={"kk": 3})


def test_marked_pairs_are_flagged(noisy_db, tmp_path: Path):
    path = tmp_path / "copy.duckdb"
    shutil.copy(noisy_db.path, path)
    first = label_error_candidates(noisy_db.kw_run, db=path, top=1)["pair_id"].iloc[0]
    mark_label_error(noisy_db.eval_set, first, db=path)
    again = label_error_candidates(noisy_db.kw_run, db=path, top=3)
    assert again["pair_id"].iloc[0] == first and again["marked_label_error"].tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------------------- the CLI
def test_cli_json_contract(noisy_db):
    out = subprocess.run([sys.executable, "-m", "workbench", "--db", str(noisy_db.path), "label-errors",
                          noisy_db.kw_run, noisy_db.kwc_run, "--top", "4", "--json"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    payload = json.loads(out.stdout)
    expected = label_error_candidates([noisy_db.kw_run, noisy_db.kwc_run], db=noisy_db.path, top=4)
    assert [item["pair_id"] for item in payload] == expected["pair_id"].tolist()
    for item, row in zip(payload, expected.to_dict("records"), strict=True):
        assert set(item) == {"pair_id", "score", "signals"} and set(item["signals"]) == set(SIGNALS)
        assert item["score"] == pytest.approx(row["score"])
        for name in SIGNALS:
            value = item["signals"][name]
            assert (value is None and pd.isna(row[name])) or value == pytest.approx(row[name])


def test_cli_table_and_errors(noisy_db, capsys):
    from workbench.cli import main

    assert main(["--db", str(noisy_db.path), "label-errors", noisy_db.kw_run, "--top", "3", "--split", "test"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:6] == ["rank", "pair_id", "score", *SIGNALS] and len(lines) == 4
    first = label_error_candidates(noisy_db.kw_run, db=noisy_db.path, top=1, split="test")["pair_id"].iloc[0]
    assert first in lines[1]
    assert main(["--db", str(noisy_db.path), "label-errors", "no-such-run", "--json"]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the report
def test_report_lists_the_top_candidates(noisy_db):
    from workbench.reports import build_report_data, render_report
    from workbench.reports.common import fmt

    runs = [noisy_db.kw_run, noisy_db.kwc_run]
    data = build_report_data(runs, db=noisy_db.path, projection=None, thumb_side=32, top_label_errors=5)
    expected = label_error_candidates(runs, db=noisy_db.path, top=5, split="test")
    assert data.label_errors["pair_id"].tolist() == expected["pair_id"].tolist()
    assert data.label_errors["thumbnail"].map(lambda b: isinstance(b, bytes)).all()
    html_text = render_report(data, "html").content.decode("utf-8")
    md_text = render_report(data, "md").content.decode("utf-8")
    section = html_text.split('id="label-errors"')[1].split("<h2")[0]
    assert "LEMoN" in section and section.count('<img class="thumb"') == 5
    md_section = md_text.split("## Likely label errors")[1].split("\n## ")[0]
    for row in expected.to_dict("records"):
        for text in (section, md_section):
            assert row["pair_id"] in text and fmt(row["score"]) in text
    single = build_report_data(noisy_db.kw_run, db=noisy_db.path, projection=None, thumb_side=0, compare=False,
                               top_label_errors=0)
    assert single.label_errors.empty and 'id="label-errors"' not in render_report(single, "html").content.decode()


def test_label_error_roundtrip_and_gallery_badge(two_runs_copy):
    db, run, eval_set = two_runs_copy.path, two_runs_copy.kwc_run, two_runs_copy.eval_set
    fp = mismatches(run, db=db, kind="false_positive")
    pair = fp["pair_id"].iloc[0]
    mark_label_error(eval_set, pair, note="colour is right", db=db)
    mark_label_error(eval_set, pair, note="second note wins", db=db)  # idempotent
    marked = list_label_errors(eval_set, db=db)
    assert marked["pair_id"].tolist() == [pair] and marked["note"].iloc[0] == "second note wins"
    again = mismatches(run, db=db, kind="false_positive")
    assert again.set_index("pair_id").at[pair, "marked_label_error"]
    hidden = mismatches(run, db=db, kind="false_positive", include_label_errors=False)
    assert pair not in set(hidden["pair_id"]) and len(hidden) == len(again) - 1
    unmark_label_error(eval_set, pair, db=db)
    assert list_label_errors(eval_set, db=db).empty
    with pytest.raises(KeyError, match="no-such-pair"):
        mark_label_error(eval_set, "no-such-pair", db=db)
