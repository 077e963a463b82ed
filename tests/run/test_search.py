"""Search and similar items over a restored run: keyword queries find their product, Chinese queries are segmented
and encoded, ranks agree with the run's stored retrieval, neighbours are symmetric, pair heads say what they
re-rank, and the CLI keeps its JSON contract."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.cli import main
from workbench.config import config_from_dict
from workbench.evaluation.results import get_artifact
from workbench.models.encoders import COLOR_CENTROIDS, has_cjk, tokenize
from workbench.run import runner
from workbench.run.search import RunSearcher, gallery_items, open_searcher

KEYWORD = {"name": "kw", "image_encoder": {"type": "keyword_image"}, "text_encoder": {"type": "keyword_text"},
           "fusion": {"type": "cosine"}}
CCA = {"name": "wf", "image_encoder": {"type": "color_histogram"}, "text_encoder": {"type": "tfidf", "dim": 32},
       "fusion": {"type": "cca", "n_components": 8}}
PAIR = {**CCA, "name": "mlp", "fusion": {"type": "concat_mlp", "width": 16, "hidden": 16, "epochs": 3}}
COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
ITEMS = {"shirt": "cotton shirt", "lamp": "desk lamp"}


def _solid(colour: str, seed: int) -> Image.Image:
    """A photo of one colour with a little noise, so no two products share image bytes."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOR_CENTROIDS[colour]) + rng.integers(-8, 9, (48, 48, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """18 products in six shared colours plus one purple lamp, the only product whose title says "purple";
    a keyword/cosine run over them. Returns (db, run id, the purple product's id)."""
    from workbench.data.evalsets import import_eval_set

    root = tmp_path_factory.mktemp("search-keyword")
    rows = []
    products = [(COLOURS[i % 6], "shirt" if i % 2 else "lamp") for i in range(18)] + [("purple", "lamp")]
    for i, (colour, category) in enumerate(products):
        _solid(colour, i).save(root / f"p{i:02d}.png")
        rows += [{"image": f"p{i:02d}.png", "title": f"{colour} {ITEMS[category]} model {i}", "product_id": f"p{i:02d}",
                  "category": category},
                 {"image": f"p{i:02d}.png", "title": f"{ITEMS[category]} in {colour}, style {i}",
                  "product_id": f"p{i:02d}", "category": category}]
    with (root / "catalogue.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    db = root / "wb.duckdb"
    assert import_eval_set(root / "catalogue.csv", "colours", db=db).imported
    run_id = runner.run(config_from_dict(KEYWORD), "colours", db=db, device="cpu")
    assert runner.get_run(run_id, db=db)["status"] == "done", runner.get_run(run_id, db=db)["error"]
    return db, run_id, "p18"


@pytest.fixture(scope="module")
def catalogue_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The bilingual synthetic catalogue with a TF-IDF/CCA run (joint space) and a concat-MLP run (pair head)."""
    from workbench.data.evalsets import create_catalog_eval_set

    db = tmp_path_factory.mktemp("search-catalogue") / "wb.duckdb"
    create_catalog_eval_set("tiny", db=db, n_products=24, seed=2)
    ids = {c["name"]: runner.run(config_from_dict(c), "tiny", db=db, device="cpu") for c in (CCA, PAIR)}
    for run_id in ids.values():
        assert runner.get_run(run_id, db=db)["status"] == "done", runner.get_run(run_id, db=db)["error"]
    return db, ids


@pytest.fixture(scope="module")
def cca(catalogue_runs) -> RunSearcher:
    db, ids = catalogue_runs
    return open_searcher(ids["wf"], db=db)


@pytest.fixture(scope="module")
def pair(catalogue_runs) -> RunSearcher:
    db, ids = catalogue_runs
    return open_searcher(ids["mlp"], db=db)


def _cli_json(capsys, *argv: str) -> list[dict]:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------------ keyword fake
def test_a_query_naming_the_distinctive_colour_returns_that_product_first(keyword_run) -> None:
    db, run_id, purple = keyword_run
    searcher = open_searcher(run_id, db=db, gallery="all")
    result = searcher.search_text("purple velvet lamp", k=5)
    assert result.hits["product_id"].iloc[0] == purple
    assert result.hits["score"].iloc[0] == pytest.approx(1.0)
    assert (result.hits["score"].iloc[1:] < 0.5).all()  # no other image is purple
    assert result.hits["modality"].eq("image").all() and result.retriever is None
    assert searcher.load_s > 0 and "exact top-k" in result.method and result.gallery.startswith("all items: 19 images")
    assert set(result.latency_ms) == {"encode", "retrieve", "total"} and result.latency_ms["total"] > 0

    photo = searcher.models.load_image(searcher.models.data.images.set_index("product_id").at[purple, "image_id"])
    by_photo = searcher.search_image(photo, k=3)
    assert by_photo.hits["modality"].eq("text").all()
    assert by_photo.hits["product_id"].iloc[:2].tolist() == [purple, purple]  # both of its titles say purple
    assert "purple" in by_photo.hits["text"].iloc[0]


def test_cli_search_prints_the_contracted_json_for_text_and_image_queries(keyword_run, capsys) -> None:
    db, run_id, purple = keyword_run
    hits = _cli_json(capsys, "--db", str(db), "search", run_id, "a purple lamp", "--k", "3", "--gallery", "all",
                     "--json")
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(set(h) == {"rank", "product_id", "score", "image_path"} for h in hits)
    assert hits[0]["product_id"] == purple and Path(hits[0]["image_path"]).name == "p18.png"

    photo = Path(hits[0]["image_path"])
    by_photo = _cli_json(capsys, "--db", str(db), "search", run_id, "--image", str(photo), "--k", "2",
                         "--gallery", "all", "--json")
    assert all(set(h) == {"rank", "product_id", "score", "text"} for h in by_photo)
    assert {h["product_id"] for h in by_photo} == {purple}


def test_cli_rejects_a_search_without_exactly_one_query(keyword_run, capsys) -> None:
    db, run_id, _ = keyword_run
    assert main(["--db", str(db), "search", run_id, "--json"]) == 2
    assert "one of QUERY, --image or --similar-to" in capsys.readouterr().err
    assert main(["--db", str(db), "search", run_id, "red", "--similar-to", "x", "--json"]) == 2


# ------------------------------------------------------------------------------------------- TF-IDF + CCA
def test_a_chinese_query_is_segmented_and_encoded_like_the_stored_title(cca: RunSearcher) -> None:
    texts = cca.models.data.texts
    test_text_ids = set(texts["text_id"].iloc[cca.text_rows])
    chinese = texts[(texts["language"] == "zh") & texts["text_id"].isin(test_text_ids)].iloc[0]
    typed = cca.search_text(chinese["text"], k=8)
    stored = cca.search_item(chinese["text_id"], k=8)
    assert list(typed.words) == tokenize(chinese["text"])
    assert any(len(w) >= 2 and has_cjk(w) for w in typed.words)  # jieba words, not single characters
    assert typed.hits["item_id"].tolist() == stored.hits["item_id"].tolist()
    np.testing.assert_allclose(typed.hits["score"], stored.hits["score"], atol=1e-5)

    free = cca.search_text("红色纯棉T恤", k=4)
    assert {"红色", "纯棉"} <= set(free.words)
    assert len(free.hits) == 4 and np.isfinite(free.hits["score"]).all()
    assert (np.diff(free.hits["score"]) <= 0).all()


def test_the_true_products_rank_matches_the_runs_stored_retrieval(cca: RunSearcher, catalogue_runs) -> None:
    db, ids = catalogue_runs
    stored = get_artifact(ids["wf"], "retrieval/t2i", db=db)["per_query"]
    texts = cca.models.data.texts
    checked = 0
    for row, first_rank in list(zip(stored["item_idx"], stored["first_rank"], strict=True))[:12]:
        result = cca.search_item(texts["text_id"].iloc[int(row)], k=5)
        assert result.true_product == texts["product_id"].iloc[int(row)]
        assert result.true_rank == int(first_rank)
        if result.true_rank <= 5:
            assert result.true_product in set(result.hits["product_id"].iloc[: result.true_rank])
        checked += 1
    assert checked == 12


def test_similar_items_are_symmetric_for_a_cosine_head(cca: RunSearcher, capsys, catalogue_runs) -> None:
    image_a = cca.models.data.images["image_id"].iloc[cca.image_rows[0]]
    near = cca.similar(image_a, k=3)
    assert near.similar and set(near.hits["modality"]) == {"image", "text"}
    assert image_a not in set(near.hits["item_id"])
    n_gallery = len(cca.image_rows) + len(cca.text_rows)
    for modality in ("image", "text"):
        b = near.hits[near.hits["modality"] == modality].iloc[0]
        back = cca.similar(b["item_id"], k=n_gallery).hits.set_index("item_id")
        assert back.at[image_a, "score"] == pytest.approx(b["score"], abs=1e-6)

    db, ids = catalogue_runs
    objects = _cli_json(capsys, "--db", str(db), "search", ids["wf"], "--similar-to", image_a, "--k", "2", "--json")
    assert [(o["modality"], o["rank"]) for o in objects] == [("image", 1), ("image", 2), ("text", 1), ("text", 2)]
    assert {"rank", "product_id", "score", "modality", "image_path"} == set(objects[0])
    assert {"rank", "product_id", "score", "modality", "text"} == set(objects[2])


def test_a_faiss_index_finds_the_exact_neighbours_on_a_small_gallery(cca: RunSearcher) -> None:
    hnsw = RunSearcher(cca.models, index="hnsw")
    query = cca.models.data.texts["text"].iloc[cca.text_rows[3]]
    exact, approx = cca.search_text(query, k=5), hnsw.search_text(query, k=5)
    assert "FAISS HNSW" in approx.method
    np.testing.assert_allclose(approx.hits["score"], exact.hits["score"], atol=1e-5)


def test_galleries_and_bad_input_give_clear_errors(cca: RunSearcher, catalogue_runs) -> None:
    db, _ = catalogue_runs
    everything = RunSearcher(cca.models, gallery="all")
    assert len(everything.image_rows) == len(cca.models.data.images) > len(cca.image_rows)
    assert cca.gallery_description.startswith("test split:")
    images, texts = gallery_items("tiny", "test", db=db)
    assert len(images) == len(cca.image_rows) and len(texts) == len(cca.text_rows)
    with pytest.raises(ValueError, match="gallery='train' is not supported"):
        RunSearcher(cca.models, gallery="train")
    with pytest.raises(ValueError, match="query is empty"):
        cca.search_text("  ")
    with pytest.raises(KeyError, match="neither an image nor a text"):
        cca.similar("no-such-item")


# --------------------------------------------------------------------------------------------- pair heads
def test_a_pair_head_reranks_a_stated_retriever(pair: RunSearcher, cca: RunSearcher) -> None:
    texts = pair.models.data.texts
    query_row = pair.text_rows[0]
    typed = pair.search_text(texts["text"].iloc[query_row], k=5)
    assert typed.retriever.startswith("BM25 over the titles")
    assert typed.method.startswith("concat_mlp pair scorer re-ranking the top 100 of BM25")
    assert set(typed.latency_ms) == {"retrieve", "rerank", "total"}
    expected = pair.models.score(list(typed.hits["item_id"]), [texts["text_id"].iloc[query_row]] * 5)
    np.testing.assert_allclose(typed.hits["score"], expected, atol=1e-4)
    assert all(o["reranked_from"] == typed.retriever for o in typed.to_json())

    photo = pair.search_image(pair.models.load_image(pair.models.data.images["image_id"].iloc[pair.image_rows[0]]))
    assert "CCA view" in photo.retriever

    item = pair.search_item(texts["text_id"].iloc[query_row], k=5)
    assert item.true_rank is not None or "not among the top 100" in item.note

    by_run = RunSearcher(pair.models, retriever=cca)
    borrowed = by_run.search_text(texts["text"].iloc[query_row], k=5)
    assert borrowed.retriever == f"run {cca.run_id}'s joint space (cca)"
    with pytest.raises(ValueError, match="needs a text query"):
        RunSearcher(pair.models, retriever="lexical").search_image(Image.new("RGB", (32, 32), "red"))
    with pytest.raises(ValueError, match="a retriever run needs a joint space"):
        RunSearcher(cca.models, retriever=pair)



def test_a_pair_heads_similar_items_use_the_runs_stored_cca_view(pair: RunSearcher, catalogue_runs) -> None:
    from workbench import store

    db, ids = catalogue_runs
    with store.connect(db) as con:
        stored = store.query_frame(con, "SELECT item_id, vector FROM run_embeddings WHERE run_id = ? AND "
                                   "modality = 'image' ORDER BY item_id", [ids["mlp"]])
    image_id = stored["item_id"].iloc[0]
    near = pair.similar(image_id, k=1)
    assert "CCA view of this run's encoder outputs" in near.method
    vectors = dict(zip(stored["item_id"], (np.asarray(v, dtype=np.float32) for v in stored["vector"]), strict=True))
    b = near.hits[near.hits["modality"] == "image"].iloc[0]
    assert float(vectors[image_id] @ vectors[b["item_id"]]) == pytest.approx(b["score"], abs=1e-5)
