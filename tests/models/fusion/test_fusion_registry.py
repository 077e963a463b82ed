"""The fusion contract, the registry (a sweep over every registered head), the shared training options, and the
package layout (imports point one way, no module over ~500 lines)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fusion_task import FIXTURES, fit_head, fitted, make_data
from sklearn.metrics import roc_auc_score

import workbench.models.fusion as fusion_package
from workbench.models.fusion import (
    BUILTIN_HEADS,
    FusionHead,
    PairSet,
    TrainOptions,
    create_fusion_head,
    get_fusion_class,
    get_fusion_spec,
    list_fusion_heads,
    register_fusion_head,
)

PACKAGE = Path(fusion_package.__file__).parent


def test_every_registered_head_has_fixture_options() -> None:
    missing = sorted(set(list_fusion_heads()) - set(FIXTURES))
    assert not missing, f"add FIXTURES entries for newly registered fusion heads: {missing}"


def test_the_package_registers_its_built_ins_on_import() -> None:
    assert {cls.name for cls in BUILTIN_HEADS} <= set(list_fusion_heads())
    assert all(get_fusion_class(cls.name) is cls for cls in BUILTIN_HEADS)


@pytest.mark.parametrize("name", list_fusion_heads())
def test_registry_sweep(name: str) -> None:
    assert name in FIXTURES, f"no fixture options for fusion head '{name}'"
    options, _, shared = FIXTURES[name]
    data, splits = make_data(shared)
    head, curves = fitted(name)
    spec = get_fusion_spec(name)
    assert spec.cls is get_fusion_class(name) and spec.config_keys == tuple(spec.defaults)
    assert create_fusion_head(name, **head.get_config_dict()).get_config_dict() == head.get_config_dict()
    assert set(head.get_config_dict()) == set(head.config_keys)

    assert set(curves) >= {"train_loss", "val_loss", "best_epoch"}
    assert len(curves["train_loss"]) == len(curves["val_loss"])
    assert 0 <= curves["best_epoch"] <= len(curves["val_loss"])
    assert (curves["best_epoch"] == 0) == (len(curves["val_loss"]) == 0)

    for split in ("val", "test"):
        pairs = splits[split]
        scores = head.score_pairs(data, pairs.image_idx, pairs.text_idx)
        assert scores.shape == (len(pairs),) and np.isfinite(scores).all()
    test = splits["test"]
    auc = roc_auc_score(test.label, head.score_pairs(data, test.image_idx, test.text_idx))
    assert auc > 0.8, f"{name}: held-out ROC-AUC {auc:.3f}"

    images, texts = np.unique(test.image_idx)[:7], np.unique(test.text_idx)[:5]
    matrix = head.score_matrix(data, images, texts, chunk=10)
    assert matrix.shape == (len(texts), len(images))
    jj, ii = np.meshgrid(np.arange(len(texts)), np.arange(len(images)), indexing="ij")
    expected = head.score_pairs(data, images[ii.ravel()], texts[jj.ravel()]).reshape(matrix.shape)
    np.testing.assert_allclose(matrix, expected, rtol=1e-4, atol=1e-5)

    joint = head.embed(data)
    assert (joint is not None) == head.embeds
    if joint is not None:
        assert joint[0].shape[0] == len(data.image_vecs) and joint[1].shape[0] == len(data.text_vecs)
        assert joint[0].shape[1] == joint[1].shape[1]


@pytest.mark.parametrize("name", list_fusion_heads())
def test_same_seed_same_scores_and_seed_matters(name: str) -> None:
    _, seeded, shared = FIXTURES[name]
    data, splits = make_data(shared)
    test = splits["test"]
    reference = fitted(name)[0].score_pairs(data, test.image_idx, test.text_idx)
    again = fit_head(name, seed=0)[0].score_pairs(data, test.image_idx, test.text_idx)
    np.testing.assert_array_equal(reference, again)
    if seeded:
        other = fit_head(name, seed=1)[0].score_pairs(data, test.image_idx, test.text_idx)
        assert not np.allclose(reference, other)


def test_registry_errors_name_the_valid_choices() -> None:
    with pytest.raises(KeyError, match=r"Fusion head 'nope' not found\. Available: \[.*'cosine'"):
        create_fusion_head("nope")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['dimm'\].*Valid keys: \['dim', 'hidden'"):
        create_fusion_head("contrastive", dimm=3)

    class Impostor(FusionHead):
        name = "cosine"

        def fit(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {}

    with pytest.raises(ValueError, match="already registered"):
        register_fusion_head(Impostor)
    assert get_fusion_class("cosine") is not Impostor


def test_contract_validation() -> None:
    with pytest.raises(ValueError, match="one length"):
        PairSet(np.arange(3), np.arange(2), np.ones(3))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        PairSet(np.arange(2), np.arange(2), np.array([0, 2]))
    data, _ = make_data()
    with pytest.raises(ValueError, match="image_tags has 3 rows; expected 88"):
        dataclasses.replace(data, image_tags=data.image_tags[:3])
    pairs = PairSet(np.arange(4), np.arange(4), np.array([1, 0, 1, 0]))
    assert len(pairs.subset(pairs.label == 0)) == 2 and pairs.positives().label.tolist() == [1, 1]


def test_training_options_are_declared_once_and_overridden_by_name() -> None:
    shared = TrainOptions.defaults()
    assert shared == {"epochs": 30, "lr": 1e-3, "batch_size": 256, "weight_decay": 1e-4, "patience": 5}
    contrastive = get_fusion_spec("contrastive")
    assert contrastive.config_keys == ("dim", "hidden", "temperature", *shared)
    overrides = {"epochs": 50, "batch_size": 128}
    assert contrastive.defaults == {"dim": 128, "hidden": 0, "temperature": 0.07, **shared, **overrides}
    for name in list_fusion_heads():
        keys = get_fusion_spec(name).config_keys
        assert set(shared) <= set(keys) or not set(shared) & set(keys), f"{name} declares part of TrainOptions"
    with pytest.raises(ValueError, match=r"Unknown training option\(s\) \['epoch'\]; valid: \['epochs'"):
        TrainOptions.defaults(epoch=3)


def test_invalid_training_options_fail_before_any_epoch() -> None:
    data, splits = make_data()
    calls: list[int] = []
    head = create_fusion_head("concat_mlp", epochs=5, batch_size=0)
    with pytest.raises(ValueError, match=r"epochs, batch_size and patience must be >= 1; got 5, 0, 5"):
        head.fit(data, splits["train"], splits["val"], seed=0, device="cpu", progress=lambda e, *_: calls.append(e))
    assert calls == []


def _fusion_imports(path: Path) -> set[str]:
    """Modules of this package that `path` imports, at module or function level ('' = the package itself)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.name}: use absolute imports"
            # `from workbench.models import fusion` imports the package too
            names = [node.module or ""]
            if node.module == "workbench.models":
                names += [f"workbench.models.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "workbench.models.fusion" or name.startswith("workbench.models.fusion."):
                found.add(name.removeprefix("workbench.models.fusion").lstrip(".").split(".")[0])
    return found


def test_package_imports_point_one_way() -> None:
    modules = {p.stem: _fusion_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert set(modules) == {"base", "training", "embedding", "pair", "token", "late"}
    assert modules["base"] == set(), "the contract and registry know no head"
    back = sorted(name for name, imported in modules.items() if "" in imported)
    assert not back, f"modules importing the package that imports them: {back}"

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        for child in modules[name]:
            visit(child, (*path, name))

    for name in modules:
        visit(name, ())


def test_no_module_over_500_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 500, sizes
