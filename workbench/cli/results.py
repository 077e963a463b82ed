"""Commands over finished runs' stored results: ``metrics``, ``compare``, ``report`` and ``label-errors``."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from workbench.cli.common import AddCommand, json_number, json_safe, print_table


def cmd_metrics(args: argparse.Namespace) -> int:
    from workbench.evaluation.aggregate import load_metrics

    metrics = load_metrics(args.run_id, db=args.db)
    if args.json:
        payload = {r.name: {"value": json_number(r.value), "ci_low": json_number(r.ci_low),
                            "ci_high": json_number(r.ci_high)}
                   for r in metrics.itertuples()}
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print_table(metrics)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from workbench.evaluation.compare import compare_runs, paired_tests_frame

    comparison = compare_runs(args.run_ids, db=args.db, baseline=args.baseline)
    if args.json:
        print(json.dumps(json_safe(comparison), indent=2, allow_nan=False))
        return 0
    print_table(pd.DataFrame(comparison["table"]))
    if comparison["tests"]:
        print(f"\nPaired tests against {comparison['baseline']} on {comparison['n_test_pairs']} test pairs in "
              f"{comparison['n_clusters']} product clusters (the unit of each test; p-values Holm-corrected):")
        print_table(paired_tests_frame(comparison))
    return 0


def cmd_label_errors(args: argparse.Namespace) -> int:
    from workbench.evaluation.label_errors import SIGNALS, label_error_candidates, signals_of

    table = label_error_candidates(args.run_ids, db=args.db, top=args.top, split=args.split)
    if args.json:
        payload = [{"pair_id": row["pair_id"], "score": json_number(row["score"]), "signals": signals_of(row)}
                   for row in table.to_dict("records")]
        print(json.dumps(payload, indent=2, allow_nan=False))
        return 0
    shown = table[["rank", "pair_id", "score", *SIGNALS, "label", "split", "pair_kind", "text"]].copy()
    for column in ("score", *SIGNALS):
        shown[column] = shown[column].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}")
    shown["text"] = shown["text"].astype(str).str.slice(0, 60)
    print_table(shown)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.reports import write_report

    path = write_report(args.run_ids, fmt=args.format, out=args.out, db=args.db, explain=args.explain)
    print(path)
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's commands and their options."""
    p = add("metrics", cmd_metrics, "Show a run's metrics with 95%% confidence intervals.")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")

    p = add("compare", cmd_compare, "Compare runs (the first is the baseline) with CIs and significance.")
    p.add_argument("run_ids", nargs="+")
    p.add_argument("--baseline", help="run id of the baseline (default: the first)")
    p.add_argument("--json", action="store_true")

    p = add("report", cmd_report, "Export a report for one or more runs.")
    p.add_argument("run_ids", nargs="+")
    p.add_argument("--format", required=True, choices=["html", "pdf", "md", "json", "csv", "parquet"])
    p.add_argument("--out", required=True)
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                   help="explain the top 3 false positives/negatives per run in HTML, Markdown and JSON reports "
                        "(rebuilds each run's models; a run that cannot be rebuilt gets a one-line reason; "
                        "default on)")

    p = add("label-errors", cmd_label_errors,
            "Rank pairs by how likely their label is wrong (neighbourhood, run disagreement, margin).")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="finished runs of one eval set; the first one's "
                   "threshold gives the margin signal")
    p.add_argument("--top", type=int, default=50, help="how many candidates (default 50)")
    p.add_argument("--split", default=None, help="only pairs of this split (train, val or test)")
    p.add_argument("--json", action="store_true")
