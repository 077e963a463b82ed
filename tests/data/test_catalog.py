from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from workbench.data.catalog import (
    BRANDS,
    CATEGORY_MATERIALS,
    COLOR_RGB,
    EXTRAS,
    CatalogParts,
    generate_catalog,
)
from workbench.data.model import ATTRIBUTE_COLUMNS, IMAGE_COLUMNS, PRODUCT_COLUMNS, TEXT_COLUMNS
from workbench.data.vocab import ATTRIBUTES, CATEGORIES, detect_language, find_attributes

N = 30
SIZE = 64
RECIPE = Path(__file__).resolve().parents[2] / "eval_sets" / "synthetic_catalog.json"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> CatalogParts:
    return generate_catalog(tmp_path_factory.mktemp("a"), n_products=N, seed=0, image_size=SIZE)


def _truth(parts: CatalogParts) -> dict[str, dict[str, str]]:
    truth = {pid: dict(zip(g["name"], g["value"], strict=True)) for pid, g in parts.attributes.groupby("product_id")}
    for pid, category in zip(parts.products["product_id"], parts.products["category"], strict=True):
        truth[pid]["category"] = category
    return truth


def test_same_seed_gives_identical_files_and_frames(catalog: CatalogParts, tmp_path: Path) -> None:
    # A different worker count must not change anything either.
    again = generate_catalog(tmp_path, n_products=N, seed=0, image_size=SIZE, workers=2)
    for name in ("products", "attributes", "texts"):
        pd.testing.assert_frame_equal(getattr(catalog, name), getattr(again, name))
    pd.testing.assert_frame_equal(catalog.images.drop(columns="path"), again.images.drop(columns="path"))
    for a, b in zip(catalog.images["path"], again.images["path"], strict=True):
        assert Path(a).name == Path(b).name
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_other_seed_differs_and_small_catalogue_is_a_prefix(catalog: CatalogParts, tmp_path: Path) -> None:
    other = generate_catalog(tmp_path / "s1", n_products=6, seed=1, image_size=SIZE)
    assert set(other.images["sha256"]).isdisjoint(catalog.images["sha256"])
    assert not set(other.texts["text"]) & set(catalog.texts["text"])
    prefix = generate_catalog(tmp_path / "prefix", n_products=6, seed=0, image_size=SIZE)
    pd.testing.assert_frame_equal(prefix.texts, catalog.texts[catalog.texts["product_id"] <= "p00006"])
    assert list(prefix.images["sha256"]) == list(catalog.images["sha256"][: len(prefix.images)])


def test_frames_follow_the_eval_set_layout(catalog: CatalogParts) -> None:
    assert tuple(catalog.products.columns) == PRODUCT_COLUMNS
    assert tuple(catalog.attributes.columns) == ATTRIBUTE_COLUMNS
    assert tuple(catalog.images.columns) == IMAGE_COLUMNS
    assert tuple(catalog.texts.columns) == TEXT_COLUMNS
    assert list(catalog.products["product_id"]) == [f"p{i:05d}" for i in range(1, N + 1)]
    per_product = catalog.attributes.groupby("product_id")["name"].apply(sorted)
    assert all(names == ["brand", "color", "material", "pattern"] for names in per_product)
    for frame, kind, id_column in ((catalog.images, "i", "image_id"), (catalog.texts, "t", "text_id")):
        counts = frame.groupby("product_id").size()
        assert counts.index.tolist() == catalog.products["product_id"].tolist()
        assert counts.between(2, 3).all()
        pairs = zip(frame["product_id"], frame[id_column], strict=True)
        assert all(re.fullmatch(rf"{p}-{kind}[1-3]", i) for p, i in pairs)
    for text, sha in zip(catalog.texts["text"], catalog.texts["sha256"], strict=True):
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == sha


def test_images_are_real_files_of_the_requested_size(catalog: CatalogParts) -> None:
    formats = set()
    for row in catalog.images.itertuples():
        path = Path(row.path)
        assert path.is_absolute() and path.name in (f"{row.image_id}.png", f"{row.image_id}.jpg")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256
        with Image.open(path) as image:
            assert image.size == (SIZE, SIZE) == (row.width, row.height)
            assert image.mode == "RGB"
            formats.add(image.format)
    assert formats == {"PNG", "JPEG"}
    assert catalog.images["sha256"].is_unique


def test_every_category_appears(catalog: CatalogParts) -> None:
    assert set(catalog.products["category"]) == set(CATEGORIES)


def test_titles_mention_colour_and_category_and_never_contradict(catalog: CatalogParts) -> None:
    truth = _truth(catalog)
    for row in catalog.texts.itertuples():
        found = find_attributes(row.text)
        assert found["color"] == truth[row.product_id]["color"], row.text
        assert found["category"] == truth[row.product_id]["category"], row.text
        assert all(truth[row.product_id][name] == value for name, value in found.items()), row.text
    assert sum("material" in find_attributes(t) for t in catalog.texts["text"]) > len(catalog.texts) / 2
    assert sum("pattern" in find_attributes(t) for t in catalog.texts["text"]) > len(catalog.texts) / 2


def test_titles_mix_languages(catalog: CatalogParts) -> None:
    texts = catalog.texts
    assert all(set(g) == {"en", "zh"} for g in texts.groupby("product_id")["language"].apply(set))
    assert 0.35 < (texts["language"] == "en").mean() < 0.65
    assert all(detect_language(t) == lang for t, lang in zip(texts["text"], texts["language"], strict=True))
    assert texts["text"].is_unique


def test_progress_is_reported_up_to_the_total(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_catalog(tmp_path, n_products=3, image_size=32, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("kwargs", [{"n_products": 0}, {"seed": -1}, {"image_size": 8}, {"workers": 0}])
def test_invalid_arguments_raise(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        generate_catalog(tmp_path, **kwargs)


def test_catalogue_tables_agree_with_the_vocabulary() -> None:
    assert set(COLOR_RGB) == set(ATTRIBUTES["color"])
    assert set(CATEGORY_MATERIALS) == set(CATEGORIES) == set(EXTRAS)
    used = {m for materials in CATEGORY_MATERIALS.values() for m in materials}
    assert used == set(ATTRIBUTES["material"])
    assert len(BRANDS) >= 20
    # Brand names and size/extra words must not read as attributes, or titles would contradict their product.
    for words in [*BRANDS.items(), *(w for e in EXTRAS.values() for w in e.values())]:
        for word in words:
            assert find_attributes(word) == {}, word


def test_recipe_file_matches_the_generator_defaults() -> None:
    recipe = json.loads(RECIPE.read_text(encoding="utf-8"))
    defaults = inspect.signature(generate_catalog).parameters
    assert recipe["name"] == "demo"
    assert recipe["n_products"] == defaults["n_products"].default == 2000
    assert recipe["seed"] == defaults["seed"].default == 0
    assert recipe["image_size"] == defaults["image_size"].default == 128
