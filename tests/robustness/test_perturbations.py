"""Perturbations: registry, determinism and growing strength (sweeps over the registry), and known answers."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from workbench.data.images import load_image
from workbench.data.vocab import find_attributes
from workbench.robustness import SEVERITIES, SUITES, get_perturbation, list_perturbations, perturb, resolve_suite
from workbench.robustness.texts import NEIGHBOURS, word_spans

UNIT_TEXTS = ("Apple smartphone 128GB, 6.1 inch, 1.5L bottle and a 350ml mug",
              "华为 智能手机 128GB 5G 电池 350毫升 水杯 40毫米")
RANDOM_FREE = {"identity", "gaussian_blur", "jpeg", "unit_variants"}  # nothing drawn: the seed cannot matter


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@pytest.fixture(scope="module")
def photos(catalogue) -> list[Image.Image]:
    data, _ = catalogue
    return [load_image(path, max_side=256) for path in data.images["path"].iloc[:10]]


@pytest.fixture(scope="module")
def titles(catalogue) -> list[str]:
    data, _ = catalogue
    english = list(data.texts.loc[data.texts["language"] == "en", "text"].iloc[:8])
    chinese = list(data.texts.loc[data.texts["language"] == "zh", "text"].iloc[:8])
    return english + chinese + list(UNIT_TEXTS)


def _distance(name: str, item, severity: int, vocabulary, seed: int = 0) -> float:
    out = perturb(name, item, severity=severity, seed=seed, vocabulary=vocabulary)
    if isinstance(item, str):
        return levenshtein(item, out)
    return float(np.abs(np.asarray(out, np.float64) - np.asarray(item, np.float64)).mean())


# ----------------------------------------------------------------------------------------------------- registry
def test_registry_covers_both_modalities_with_unique_names() -> None:
    specs = list_perturbations()
    assert len({p.name for p in specs}) == len(specs)
    assert {p.modality for p in specs} == {"image", "text", "both"}
    assert all(p.description for p in specs)
    assert set(SUITES["image"]) == {"gaussian_blur", "jpeg", "gaussian_noise", "brightness_contrast", "crop_zoom",
                                    "rotation", "color_shift"}
    assert set(SUITES["text"]) == {"keyboard_typo", "char_drop_swap", "case_punct", "word_order", "drop_attribute",
                                   "mixed_language", "unit_variants"}
    assert [p.name for p in list_perturbations("both")] == ["identity"]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="not found. Available: .*gaussian_blur"):
        get_perturbation("fog")
    with pytest.raises(KeyError, match="neither a suite nor a perturbation.*'image'.*keyboard_typo"):
        resolve_suite("image,fog")
    with pytest.raises(ValueError, match="Empty suite"):
        resolve_suite(" , ")
    with pytest.raises(ValueError, match="allowed"):
        list_perturbations("audio")


def test_resolve_suite_expands_suites_in_registry_order_without_duplicates() -> None:
    assert resolve_suite("text,identity") == [*SUITES["text"], "identity"]
    assert resolve_suite(["jpeg", "image"]) == ["jpeg", *(n for n in SUITES["image"] if n != "jpeg")]


@pytest.mark.parametrize("severity", [0, 6, 2.5, True, "3"])
def test_bad_severities_are_refused(severity, photos) -> None:
    with pytest.raises(ValueError, match=r"allowed: \[1, 2, 3, 4, 5\]"):
        perturb("jpeg", photos[0], severity=severity)


def test_modality_and_vocabulary_are_checked(photos) -> None:
    with pytest.raises(ValueError, match="perturbs images, got a text"):
        perturb("jpeg", "red cotton T-shirt", severity=1)
    with pytest.raises(ValueError, match="perturbs texts, got a image"):
        perturb("keyboard_typo", photos[0], severity=1)
    with pytest.raises(ValueError, match="needs the eval set's vocabulary"):
        perturb("word_order", "red cotton T-shirt", severity=1)
    with pytest.raises(TypeError, match="PIL image or a str"):
        perturb("identity", b"bytes", severity=1)


# ------------------------------------------------------------------------------------------ sweeps over registry
@pytest.mark.parametrize("spec", list_perturbations(), ids=lambda p: p.name)
def test_same_seed_same_output_and_other_seeds_differ(spec, photos, titles, catalogue) -> None:
    _, vocabulary = catalogue
    items = photos[:3] if spec.modality == "image" else titles if spec.modality == "text" else [photos[0], titles[0]]

    def run(seed: int) -> list[bytes | str]:
        out = []
        for item in items:
            for severity in SEVERITIES:
                fresh = item.copy() if isinstance(item, Image.Image) else str(item)
                result = perturb(spec.name, fresh, severity=severity, seed=seed, vocabulary=vocabulary)
                out.append(result.tobytes() if isinstance(result, Image.Image) else result)
        return out

    first = run(7)
    assert run(7) == first
    if spec.name not in RANDOM_FREE:
        assert run(8) != first


@pytest.mark.parametrize("spec", [p for p in list_perturbations() if p.name != "identity"], ids=lambda p: p.name)
def test_strength_grows_with_severity(spec, photos, titles, catalogue) -> None:
    """Mean distance to the original (pixels, or edit distance for texts) over real catalogue photos and
    titles never falls from one severity to the next and is larger at 5 than at 1."""
    _, vocabulary = catalogue
    items = photos if spec.modality == "image" else titles
    means = [np.mean([_distance(spec.name, item, s, vocabulary) for item in items]) for s in SEVERITIES]
    assert all(b >= a for a, b in zip(means, means[1:], strict=False)), means
    assert means[-1] > means[0] > 0, means


def test_identity_changes_nothing(photos, titles, catalogue) -> None:
    _, vocabulary = catalogue
    for severity in SEVERITIES:
        assert perturb("identity", photos[0], severity=severity).tobytes() == photos[0].tobytes()
        assert perturb("identity", titles[0], severity=severity, vocabulary=vocabulary) == titles[0]


def test_severity_extends_the_same_random_choices(titles, catalogue) -> None:
    """Typo positions are a growing prefix of one order: every typo at severity 1 is still there at 5."""
    _, vocabulary = catalogue
    text = titles[0]
    low, high = (perturb("keyboard_typo", text, severity=s, seed=3, vocabulary=vocabulary) for s in (1, 5))
    changed_low = {i for i, (a, b) in enumerate(zip(text, low, strict=True)) if a != b}
    changed_high = {i for i, (a, b) in enumerate(zip(text, high, strict=True)) if a != b}
    assert changed_low and changed_low < changed_high


# --------------------------------------------------------------------------------------------- known answers
def test_images_keep_their_size_and_mode(photos) -> None:
    for spec in list_perturbations("image"):
        out = perturb(spec.name, photos[0], severity=5)
        assert out.size == photos[0].size and out.mode == "RGB", spec.name


def test_colour_shift_leaves_greys_grey_and_brightness_contrast_flattens() -> None:
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[:, None, None], (1, 64, 3))
    grey = Image.fromarray(ramp, "RGB")
    assert perturb("color_shift", grey, severity=5).tobytes() == grey.tobytes()
    spreads = [np.asarray(perturb("brightness_contrast", grey, severity=s), np.float64).std() for s in SEVERITIES]
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] < 0.3 * ramp.std()


def test_typos_hit_neighbouring_keys_and_leave_chinese_alone(catalogue) -> None:
    _, vocabulary = catalogue
    text = "Leather handbag for women"
    out = perturb("keyboard_typo", text, severity=5, vocabulary=vocabulary)
    pairs = [(a, b) for a, b in zip(text, out, strict=True) if a != b]
    assert pairs and all(b.lower() in NEIGHBOURS[a.lower()] and a.isupper() == b.isupper() for a, b in pairs)
    assert perturb("keyboard_typo", "红色纯棉短袖", severity=5, vocabulary=vocabulary) == "红色纯棉短袖"


def test_case_and_punctuation_change_nothing_else(titles, catalogue) -> None:
    _, vocabulary = catalogue

    def letters(text: str) -> str:
        return re.sub(r"[\W_]", "", text).casefold()

    for text in titles:
        out = perturb("case_punct", text, severity=5, vocabulary=vocabulary)
        assert out != text and letters(out) == letters(text)


def test_word_order_moves_whole_words_only(titles, catalogue) -> None:
    _, vocabulary = catalogue
    for text in titles:
        out = perturb("word_order", text, severity=5, vocabulary=vocabulary)
        assert out != text and sorted(out) == sorted(text)  # the same characters, words moved whole:
        assert {(o.attribute, o.value) for o in vocabulary.occurrences(out)} == {
            (o.attribute, o.value) for o in vocabulary.occurrences(text)}


def test_chinese_words_are_segmented_as_words(catalogue) -> None:
    _, vocabulary = catalogue
    spans = word_spans("红色纯棉条纹T恤 350毫升", vocabulary)
    words = ["红色纯棉条纹T恤 350毫升"[s:e] for s, e in spans]
    assert "350毫升" in words and "红色" in words and "纯棉" in words


def test_drop_attribute_removes_one_word_then_all(titles, catalogue) -> None:
    _, vocabulary = catalogue
    for text in titles[:16]:
        found = vocabulary.occurrences(text)
        if not found:
            continue
        one = perturb("drop_attribute", text, severity=1, vocabulary=vocabulary)
        assert len(vocabulary.occurrences(one)) == len(found) - 1
        assert vocabulary.occurrences(perturb("drop_attribute", text, severity=5, vocabulary=vocabulary)) == []


def test_mixed_language_translates_every_attribute_word(catalogue) -> None:
    data, vocabulary = catalogue
    for text in data.texts.loc[data.texts["language"] == "en", "text"].iloc[:8]:
        out = perturb("mixed_language", text, severity=5, vocabulary=vocabulary)
        english = {k: v for k, v in find_attributes(text, "en").items() if k != "brand"}
        assert english and {k: v for k, v in find_attributes(out, "zh").items() if k in english} == english


@pytest.mark.parametrize(("text", "severity", "expected"), [
    ("Phone 128GB", 1, "Phone 128G"),
    ("Bottle 1.5L", 2, "Bottle 1500ml"),
    ("Mug 350 ml", 2, "Mug 0.35 L"),
    ("Mug 350 ml", 3, "Mug 0.35L"),
    ("Mug 12 oz", 4, "Mug 355毫升"),
    ("水杯 350毫升", 4, "水杯 0.35 L"),
    ("手表 40毫米", 5, "手表 ４ cm"),
    ("5G phone, size 42", 5, "5G phone, size 42"),  # a network and a size are no units
])
def test_unit_variants_known_answers(text, severity, expected, catalogue) -> None:
    _, vocabulary = catalogue
    assert perturb("unit_variants", text, severity=severity, vocabulary=vocabulary) == expected
