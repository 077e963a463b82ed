"""Commands that rebuild a finished run's models: ``robustness`` (perturbed re-scoring) and ``explain``."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.cli.common import AddCommand, json_safe, print_table


def cmd_robustness(args: argparse.Namespace) -> int:
    from workbench.robustness import results_json, run_robustness

    bar = tqdm(desc="robustness", unit="step", file=sys.stderr, dynamic_ncols=True, disable=not sys.stderr.isatty())

    def progress(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_description(label)

    try:
        results = run_robustness(args.run_id, suite=args.suite, severities=args.severities, seed=args.seed,
                                 db=args.db, device=args.device, n_resamples=args.n_resamples, progress=progress)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(results_json(results), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print_table(results[["perturbation", "severity", "metric", "value", "ci_low", "ci_high", "drop",
                              "drop_ci_low", "drop_ci_high", "n_changed", "n_items"]].round(4))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from workbench.explain import explain_pair, write_overlay
    from workbench.run.restore import restore_run_models

    models = restore_run_models(args.run_id, db=args.db, device=args.device)
    explanation = explain_pair(models, args.pair_id, image_method=args.image_method, text_method=args.text_method)
    if args.out:
        pair = models.pair(args.pair_id)
        path = write_overlay(explanation, models.load_image(pair["image_id"]), models.text(pair["text_id"]), args.out)
        print(f"Overlay written to {path}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(json_safe(explanation.to_json()), indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print(f"pair {args.pair_id}: score {explanation.score:.4f}  ({explanation.method})")
    if explanation.image is not None:
        print(f"image relevance ({explanation.image.method}, rows × columns over the photo):")
        print(np.array2string(np.asarray(explanation.image.relevance), precision=3, suppress_small=True))
    if explanation.text is not None:
        print(f"words ({explanation.text.method}):")
        print_table(pd.DataFrame(explanation.text.tokens, columns=["word", "attribution"]).round(4))
    for side, reason in explanation.reasons.items():
        print(f"{side} not explained: {reason}")
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's commands and their options."""
    p = add("robustness", cmd_robustness,
            "Re-score a finished run's test pairs under perturbed photos and titles, per severity, with CIs.")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--suite", default="image,text",
                   help="comma-separated suites (image, text) and/or perturbation names (default image,text)")
    p.add_argument("--severities", default="1,3,5", help="comma-separated severities from 1 to 5 (default 1,3,5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default 0)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"],
                   help="where the run's models are rebuilt; use the device the run ran on (default cpu)")
    p.add_argument("--n-resamples", type=int, default=1000, help="product-bootstrap resamples (default 1000)")
    p.add_argument("--json", action="store_true",
                   help="print {perturbation: [{severity, metric, value, ci_low, ci_high}, ...]}")

    p = add("explain", cmd_explain,
            "Explain one pair's score: relevance over the photo, attribution per word (rebuilds the run's models).")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("pair_id", metavar="PAIR_ID")
    p.add_argument("--json", action="store_true",
                   help="print {score, image_relevance, text_tokens, method, ...}")
    p.add_argument("--out", metavar="FILE.png", help="write the overlay (heatmap over the photo + word highlights)")
    p.add_argument("--image-method", default=None, help="an image explainer (default: the first that applies)")
    p.add_argument("--text-method", default=None, help="a text explainer (default: the first that applies)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"],
                   help="where the run's models are rebuilt; use the device the run ran on (default cpu)")
