"""Negative pairs that stay honest on any catalogue.

Each positive (image, text) gets at most one negative of each kind, always from the image's own split:
``random`` (a text of another content group), ``hard`` (a text of another content group in the image product's
category) and ``attribute`` (the positive text with one value of the eval set's own vocabulary replaced by
another value of that attribute, as whole words, every occurrence at once; see
:func:`workbench.data.vocab.catalogue_vocabulary`). Content groups (:mod:`workbench.data.grouping`) make
"another product" mean "other content", so no negative is a reseller's copy of the match.

A candidate is discarded, and counted under its reason, when it cannot be what it claims to be:
``nothing_to_swap`` (the text names no value of the product that another value could replace),
``inexact_swap`` (whole-word matching of the swapped text does not find exactly the old value replaced by the
new one, e.g. the new word fused with its neighbour), ``equals_positive`` (the text, normalised, is a positive
text of the image's content group, the unchanged source included), ``no_other_group_text`` (the split or
category holds no text of another group), ``no_category`` (a hard negative for a product without category)
and ``duplicate`` (the image is already paired with that normalised text).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data.grouping import normalise_text
from workbench.data.model import EvalSetData
from workbench.data.vocab import CatalogueVocabulary, catalogue_vocabulary, contains_han

NEGATIVE_KINDS = ("random", "hard", "attribute")
# Within one positive the most specific kind is drawn first, so a duplicate keeps the attribute or hard row.
_DRAW_ORDER = ("attribute", "hard", "random")
TRIES_PER_WORD = 8  # new values tried per swappable word: bounds the cost on catalogues with many values


@dataclass(frozen=True)
class Swap:
    """``text`` with every whole-word occurrence of ``old`` (a value of ``attribute``) replaced by ``new``."""

    text: str
    attribute: str
    old: str
    new: str


@dataclass(frozen=True)
class Negatives:
    """Negative pair rows (``PAIR_COLUMNS`` order), the counterfactual texts they use (``TEXT_COLUMNS`` order,
    no product) and the audit: counts by kind, swaps by attribute and discarded candidates by reason."""

    rows: list[tuple]
    texts: list[tuple]
    audit: dict


def stable_id(prefix: str, *parts: str) -> str:
    """``prefix`` and 12 hex digits of a SHA-1 over ``parts``: ids that depend on content only."""
    return prefix + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


def _match_case(form: str, old: str) -> str:
    return form[0].upper() + form[1:] if old[:1].isupper() and form[:1].islower() else form


def attribute_swaps(
    text: str,
    vocabulary: CatalogueVocabulary,
    rng: np.random.Generator,
    *,
    known: Mapping[str, str] | None = None,
) -> Iterator[Swap]:
    """Candidate swaps of ``text``, in random order: one value's every occurrence replaced by another value.

    Each occurrence becomes a form of the new value in its own script (Chinese or not; a leading capital is
    kept). Values the text already names are no targets. Where ``known`` (the product's recorded values)
    has the attribute, only that value is swapped: a phone case's title may name the colour of the phone it
    fits. Candidates are unchecked; :func:`draw_negatives` checks them.
    """
    occurrences = vocabulary.occurrences(text)
    named: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], list] = defaultdict(list)
    for o in occurrences:
        named[o.attribute].add(o.value)
        where[(o.attribute, o.value)].append(o)
    known = known or {}
    words = [key for key in sorted(where) if known.get(key[0], key[1]) == key[1]]
    for w in rng.permutation(len(words)):
        attribute, old = words[int(w)]
        spans = where[(attribute, old)]
        scripts = tuple(sorted({contains_han(text[o.start : o.end]) for o in spans}))
        eligible = vocabulary.values_with_forms(attribute, scripts)
        # a few random picks (not a pass over every value): attributes may have thousands of values
        picks = rng.choice(len(eligible), size=min(len(eligible), TRIES_PER_WORD + len(named[attribute])),
                           replace=False)
        for new in [eligible[int(k)] for k in picks if eligible[int(k)] not in named[attribute]][:TRIES_PER_WORD]:
            chosen = {}
            for han in scripts:
                forms = vocabulary.forms(attribute, new, han=han)
                chosen[han] = forms[int(rng.integers(len(forms)))]
            swapped = text
            for o in reversed(spans):
                written = text[o.start : o.end]
                swapped = swapped[: o.start] + _match_case(chosen[contains_han(written)], written) + swapped[o.end :]
            yield Swap(swapped, attribute, old, new)


def _checked_swap(
    text: str,
    vocabulary: CatalogueVocabulary,
    rng: np.random.Generator,
    *,
    product: str,
    image_id: str,
    positives: set[str],
    seen: set[tuple[str, str]],
    discarded: Counter[str],
) -> Swap | None:
    """The first candidate swap that passes every check; each failed candidate is counted in ``discarded``."""
    before = vocabulary.named(text)
    tried = False
    for candidate in attribute_swaps(text, vocabulary, rng, known=vocabulary.product_values.get(product)):
        tried = True
        expected = {**before, candidate.attribute: (before[candidate.attribute] - {candidate.old}) | {candidate.new}}
        normalised = normalise_text(candidate.text)
        reason = ("inexact_swap" if vocabulary.named(candidate.text) != expected
                  else "equals_positive" if normalised in positives
                  else "duplicate" if (image_id, normalised) in seen else None)
        if reason is None:
            return candidate
        discarded[reason] += 1
    if not tried:
        discarded["nothing_to_swap"] += 1
    return None


def _pool_draw(pool: tuple[np.ndarray, np.ndarray], group: str, rng: np.random.Generator) -> str | None:
    """A uniformly drawn text id of ``pool`` (sorted by group) outside ``group``; None when there is none."""
    groups, text_ids = pool
    lo, hi = int(np.searchsorted(groups, group, "left")), int(np.searchsorted(groups, group, "right"))
    n = len(text_ids) - (hi - lo)
    if n <= 0:
        return None
    r = int(rng.integers(n))
    return str(text_ids[r if r < lo else r + hi - lo])


def _pools(keyed: dict[object, list[tuple[str, str]]]) -> dict[object, tuple[np.ndarray, np.ndarray]]:
    """Key -> (groups, text ids) sorted by (group, text id): a group's texts are one block."""
    pools = {}
    for key, members in keyed.items():
        members = sorted(members)
        pools[key] = (np.array([g for g, _ in members], dtype=str), np.array([t for _, t in members], dtype=str))
    return pools


def draw_negatives(
    data: EvalSetData,
    positives: list[tuple[str, str]],
    *,
    split_of: Mapping[str, str],
    groups: Mapping[str, str],
    kinds: tuple[str, ...] = NEGATIVE_KINDS,
    seed: int = 0,
) -> Negatives:
    """Draw the negatives of ``positives`` ((image id, text id), both of one product).

    ``split_of`` and ``groups`` map product ids to splits and content groups. Every kind draws from its own
    generator seeded by (seed, kind), in the order of the sorted positives and of ids, so the result depends
    on content and seed only, never on row order; adding a kind changes the others only through duplicates.
    """
    unknown = sorted(set(kinds) - set(NEGATIVE_KINDS))
    if unknown:
        raise ValueError(f"Unknown negative kind(s) {unknown}. Available: {list(NEGATIVE_KINDS)}")
    image_product = {str(i): str(p) for i, p in zip(data.images["image_id"], data.images["product_id"], strict=True)}
    category = {str(p): (str(c) if not pd.isna(c) else None)
                for p, c in zip(data.products["product_id"], data.products["category"], strict=True)}
    texts = data.texts
    text_of = dict(zip(texts["text_id"].astype(str), texts["text"].astype(str), strict=True))
    language_of = dict(zip(texts["text_id"].astype(str), texts["language"], strict=True))
    normal = {text_id: normalise_text(text) for text_id, text in text_of.items()}

    group_texts: dict[str, set[str]] = defaultdict(set)  # content group -> normalised positive texts
    by_split: dict[object, list[tuple[str, str]]] = defaultdict(list)
    by_category: dict[object, list[tuple[str, str]]] = defaultdict(list)
    for text_id, product in zip(texts["text_id"].astype(str), texts["product_id"], strict=True):
        if pd.isna(product) or str(product) not in split_of:
            continue
        product = str(product)
        group_texts[groups[product]].add(normal[text_id])
        by_split[split_of[product]].append((groups[product], text_id))
        if category[product] is not None:
            by_category[(split_of[product], category[product])].append((groups[product], text_id))
    pools = {"random": _pools(by_split), "hard": _pools(by_category)}

    vocabulary = catalogue_vocabulary(data) if "attribute" in kinds else None
    rngs = {kind: np.random.default_rng([seed, NEGATIVE_KINDS.index(kind)]) for kind in kinds}
    seen = {(image_id, normal[text_id]) for image_id, text_id in positives}
    rows: list[tuple] = []
    new_texts: dict[str, tuple] = {}
    by_kind: Counter[str] = Counter({kind: 0 for kind in kinds})
    swaps: Counter[str] = Counter()
    discarded: Counter[str] = Counter()
    for image_id, text_id in sorted(positives):
        product = image_product[image_id]
        group, split = groups[product], split_of[product]
        for kind in (k for k in _DRAW_ORDER if k in kinds):
            rng = rngs[kind]
            if kind == "attribute":
                swap = _checked_swap(text_of[text_id], vocabulary, rng, product=product, image_id=image_id,
                                     positives=group_texts[group], seen=seen, discarded=discarded)
                if swap is None:
                    continue
                language = language_of[text_id]
                language = None if pd.isna(language) else str(language)
                neg_text_id = stable_id("tx-", language or "", swap.text)
                new_texts[neg_text_id] = (neg_text_id, None, swap.text, language,
                                          hashlib.sha256(swap.text.encode()).hexdigest())
                seen.add((image_id, normalise_text(swap.text)))
                rows.append((stable_id("pa-", image_id, neg_text_id), image_id, neg_text_id, 0, split, kind,
                             swap.attribute, swap.old, swap.new))
                by_kind[kind] += 1
                swaps[swap.attribute] += 1
                continue
            if kind == "hard" and category[product] is None:
                discarded["no_category"] += 1
                continue
            pool = pools[kind].get(split if kind == "random" else (split, category[product]))
            neg_text_id = _pool_draw(pool, group, rng) if pool is not None else None
            if neg_text_id is None:
                discarded["no_other_group_text"] += 1
            elif (image_id, normal[neg_text_id]) in seen:
                discarded["duplicate"] += 1
            else:
                seen.add((image_id, normal[neg_text_id]))
                rows.append((stable_id(f"p{kind[0]}-", image_id, neg_text_id), image_id, neg_text_id, 0, split,
                             kind, None, None, None))
                by_kind[kind] += 1
    audit = {
        "by_kind": dict(sorted(by_kind.items())),
        "swaps_by_attribute": dict(sorted(swaps.items())),
        "discarded": dict(sorted(discarded.items())),
    }
    if vocabulary is not None:
        audit["vocabulary"] = {attribute: len(values) for attribute, values in vocabulary.values.items()}
    return Negatives(rows, [new_texts[k] for k in sorted(new_texts)], audit)
