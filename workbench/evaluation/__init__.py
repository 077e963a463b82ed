"""Evaluation: a run's stored per-item results in, metrics and comparisons out. Runs no model.

- :mod:`workbench.evaluation.results` — stored scored pairs, thresholds and artifacts of a run.
- :mod:`workbench.evaluation.aggregate` — metrics of one run (thresholds, calibration, slices, CIs); operating
  points.
- :mod:`workbench.evaluation.compare` — comparisons between runs (leaderboard, clustered paired tests, flips).
- :mod:`workbench.evaluation.mismatches` — mismatch galleries and retrieval failures of one run.
- :mod:`workbench.evaluation.label_errors` — label-error marks and automatic candidates.

Imports the metrics package, data-layer readers and the store only: never :mod:`workbench.run` or
:mod:`workbench.models` (a test enforces it). The run package calls :func:`aggregate.compute_metrics` at its end.
"""
