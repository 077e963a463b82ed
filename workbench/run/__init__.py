"""A run: one configuration on one eval set, from encoders to the per-item results stored in DuckDB.

- :mod:`workbench.run.runner` — create, execute, list and cancel runs (CLI, app thread, Python API).
- :mod:`workbench.run.progress` — the one typed progress record a run writes and the app and CLI read.
- :mod:`workbench.run.fitting` — the stages shared by a run and a restore: encoders, fusion inputs, the head.
- :mod:`workbench.run.encoding` — batched encoding behind the embedding cache; :mod:`workbench.run.device`.
- :mod:`workbench.run.artifacts` — everything that needs a model besides the pair scores: retrieval rankings,
  zero-shot prompt ranks, the joint-space embeddings (a CCA view for heads without one).
- :mod:`workbench.run.restore` — rebuild a finished run's models to score new content.

A run calls :mod:`workbench.evaluation` at its end; evaluation never imports this package.
"""
