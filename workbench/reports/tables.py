"""Per-pair results (every split) as one DataFrame, for the CSV and Parquet exports."""

from __future__ import annotations

import pandas as pd

from workbench.reports.data import PAIR_COLUMNS, ReportData


def pairs_frame(data: ReportData) -> pd.DataFrame:
    """One row per scored pair and run: ``PAIR_COLUMNS``, led by ``run_id, config`` when there are several runs.

    ``prediction`` is 1 when ``score >= threshold`` (the run's stored, val-chosen threshold; per category when the
    config asks for it), exactly the rule behind the stored metrics.
    """
    frames = []
    for run in data.runs:
        frame = run.pairs[list(PAIR_COLUMNS)].copy()
        if len(data.runs) > 1:
            frame.insert(0, "config", run.config_name)
            frame.insert(0, "run_id", run.run_id)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["label"] = out["label"].astype("int8")
    out["prediction"] = out["prediction"].astype("Int8")
    out["correct"] = out["correct"].astype("boolean")
    return out


def write_csv(data: ReportData, path) -> None:
    pairs_frame(data).to_csv(path, index=False, float_format="%.17g")


def write_parquet(data: ReportData, path) -> None:
    pairs_frame(data).to_parquet(path, index=False)
