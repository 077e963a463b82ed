"""The robustness figure: a panel per perturbation, a CI band and a curve per variant starting at the clean run."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.viz.robustness import robustness_figure


def _frame(offset: float, seed: int = 0) -> pd.DataFrame:
    rows = []
    for perturbation in ("gaussian_blur", "keyboard_typo"):
        for severity in (1, 3, 5):
            value = 0.9 - offset - 0.05 * severity
            rows.append({"perturbation": perturbation, "severity": severity, "seed": seed, "metric": "pair/roc_auc",
                         "value": value, "ci_low": value - 0.02, "ci_high": value + 0.02, "clean_value": 0.9 - offset,
                         "clean_ci_low": 0.88 - offset, "clean_ci_high": 0.92 - offset})
    return pd.DataFrame(rows)


def test_variants_side_by_side_with_bands_from_the_clean_point() -> None:
    fig = robustness_figure({"cca": _frame(0.0), "<b>mlp</b>": _frame(0.1)})
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(lines) == len(bands) == 4  # 2 variants x 2 perturbations
    assert [a.text for a in fig.layout.annotations] == ["gaussian_blur", "keyboard_typo"]
    first = lines[0]
    assert list(first.x) == [0, 1, 3, 5] and first.y[0] == pytest.approx(0.9) and first.y[-1] == pytest.approx(0.65)
    assert list(bands[0].y[:4]) == pytest.approx([0.92, 0.87, 0.77, 0.67])  # upper edge, then back along the lower
    assert sum(t.showlegend for t in lines) == 2 and "&lt;b&gt;mlp&lt;/b&gt;" in {t.name for t in lines}


def test_panels_can_be_chosen_and_bad_input_is_explained() -> None:
    fig = robustness_figure({"cca": _frame(0.0)}, perturbations=["keyboard_typo", "fog"])
    assert [a.text for a in fig.layout.annotations] == ["keyboard_typo"]
    with pytest.raises(ValueError, match="No 'pair/f1' robustness results"):
        robustness_figure({"cca": _frame(0.0)}, metric="pair/f1")
    with pytest.raises(ValueError, match="lacks columns"):
        robustness_figure({"cca": _frame(0.0).drop(columns="clean_value")})
    two_seeds = pd.concat([_frame(0.0, seed=0), _frame(0.0, seed=1)])
    with pytest.raises(ValueError, match="holds seeds"):
        robustness_figure({"cca": two_seeds})
    assert len(robustness_figure({"cca": two_seeds}, seed=1).data) == 4
