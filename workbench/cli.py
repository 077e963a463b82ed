"""The command line: ``python -m workbench [--db PATH] COMMAND …``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench import store

EXIT_BAD_INPUT = 2


def _bar(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm progress callback (done, total) and a closer."""
    bar = tqdm(desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.refresh()

    return update, bar.close


def _print_table(frame: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", 200, "display.max_columns", 30, "display.width", 160):
        print(frame.to_string(index=False) if not frame.empty else "(none)")


def _number(value) -> float | None:
    """JSON has no NaN: undefined values (a metric without a CI, say) are null."""
    return None if value is None or pd.isna(value) else float(value)


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    return _number(value)


def _parse_mapping(items: Sequence[str] | None) -> dict[str, str]:
    from workbench.data.importers import FIELDS

    mapping: dict[str, str] = {}
    for item in items or []:
        field, sep, column = item.partition("=")
        if not sep or not column:
            raise SystemExit(f"--map expects FIELD=COLUMN, got {item!r}")
        if field not in FIELDS and not field.startswith("attr."):
            raise SystemExit(f"--map: unknown field {field!r}. Valid fields: {list(FIELDS)} and attr.NAME")
        mapping[field] = column
    return mapping


# ------------------------------------------------------------------------------------------------- eval sets
def cmd_catalog(args: argparse.Namespace) -> int:
    from workbench.data.evalsets import create_catalog_eval_set

    update, close = _bar("rendering catalogue")
    try:
        summary = create_catalog_eval_set(args.name, db=args.db, n_products=args.products, seed=args.seed,
                                          progress=update, replace=args.replace)
    finally:
        close()
    print(json.dumps(summary, indent=2))
    return 0


def _report_failed_import(path: str | None, exc: Exception) -> None:
    """Show and write the report of an import that ended in an error: the per-row report when the error carries
    one (no valid row, say), else the error itself as one row, so ``--report`` always leaves a file."""
    from workbench.data.validation import ISSUE_COLUMNS

    report = getattr(exc, "report", None)
    if report is not None and not report.empty:
        print(f"Validation report ({report['row'].nunique()} row(s) with issues):")
        _print_table(report)
    if path:
        if report is None:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            report = pd.DataFrame([[0, "source", "error", "import_failed", message]], columns=list(ISSUE_COLUMNS))
        report.to_csv(path, index=False)
        print(f"Report written to {path}")


def _import_or_validate(args: argparse.Namespace, validate_only: bool) -> int:
    from workbench.data.evalsets import import_eval_set
    from workbench.data.leakage import leakage_message

    negatives = tuple(n for n in (args.negatives or "").split(",") if n)
    update, close = _bar("validating")
    try:
        outcome = import_eval_set(
            args.path, args.name or "validate", db=args.db, fmt=args.format, mapping=_parse_mapping(args.map),
            image_root=args.image_root, strict=not args.lenient, negatives=negatives, seed=args.seed,
            validate_only=validate_only, progress=update, near_duplicates=args.near_duplicates,
        )
    except Exception as exc:  # re-raised: main() turns it into a message and an exit code
        _report_failed_import(args.report, exc)
        raise
    finally:
        close()
    if not outcome.report.empty:
        print(f"Validation report ({outcome.n_bad_rows} bad row(s) of {outcome.n_rows}):")
        _print_table(outcome.report)
    if args.report:
        outcome.report.to_csv(args.report, index=False)
        print(f"Report written to {args.report}")
    if validate_only:
        print("OK: every row is valid." if outcome.n_bad_rows == 0 else "Invalid rows found.")
        return 1 if outcome.n_bad_rows else 0
    if not outcome.imported:
        print(f"Nothing imported: {outcome.n_bad_rows} row(s) have errors and --strict is the default. "
              "Fix them, or pass --lenient to import the valid rows.", file=sys.stderr)
        return 1
    print(json.dumps(outcome.summary, indent=2))
    warning = leakage_message(outcome.name, outcome.summary.get("audit"))
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    return 0


def cmd_evalset(args: argparse.Namespace) -> int:
    from workbench.data import evalsets

    if args.action == "import":
        if not args.name:
            raise SystemExit("evalset import needs --name NAME")
        return _import_or_validate(args, validate_only=False)
    if args.action == "validate":
        return _import_or_validate(args, validate_only=True)
    if args.action == "list":
        _print_table(evalsets.list_eval_sets(args.db))
        return 0
    if args.action == "show":
        info = evalsets.get_eval_set_info(args.target, args.db)
        for key in ("name", "source", "format", "created_at", "content_hash", "seed", "n_products", "n_images",
                    "n_texts", "n_pairs"):
            print(f"{key:>13}: {info[key]}")
        for key in ("pairs_by_split", "categories", "languages"):
            print(f"\n{key}:")
            _print_table(info[key])
        print("\naudit:")
        for line in evalsets.audit_lines(info["name"], info["audit"]):
            print(f"  {line}")
        return 0
    if args.action == "delete":
        evalsets.delete_eval_set(args.target, args.db)
        print(f"Deleted eval set {args.target!r} and its runs.")
        return 0
    raise SystemExit(f"unknown evalset action {args.action}")


# ------------------------------------------------------------------------------------------------------ runs
def _run_with_bar(config, eval_set: str, args: argparse.Namespace) -> str:
    from workbench import runner

    bar = tqdm(file=sys.stderr, dynamic_ncols=True)
    current = {"stage": None}

    def callback(state: dict) -> None:
        if current["stage"] != state["stage"]:
            current["stage"] = state["stage"]
            bar.set_description(f"[{state['stage_index'] + 1}/{state['n_stages']}] {state['stage']}")
            bar.reset(total=state["total"] or None)
        elif state["total"] and bar.total != state["total"]:
            bar.reset(total=state["total"])
        bar.n = state["done"]
        bar.refresh()

    run_id = runner.create_run(config, eval_set, db=args.db, device=args.device)
    try:
        runner.execute_run(run_id, db=args.db, device=args.device, callback=callback,
                           backend=getattr(args, "backend", "local"), ray_address=getattr(args, "ray_address", None))
    except KeyboardInterrupt:
        runner.request_cancel(run_id, db=args.db)
        raise
    finally:
        bar.close()
    return run_id


def cmd_run(args: argparse.Namespace) -> int:
    from workbench import runner
    from workbench.config import load_config

    config = load_config(args.config).with_seed(args.seed)
    run_id = _run_with_bar(config, args.eval_set, args)
    record = runner.get_run(run_id, db=args.db)
    if record["status"] != "done":
        print(f"Run {run_id} {record['status']}: {record['error']}", file=sys.stderr)
    print(run_id)
    return 0 if record["status"] == "done" else 1


def cmd_configs(args: argparse.Namespace) -> int:
    from workbench.config import list_configs

    configs = [
        {"name": c.name, "description": c.description, "offline": c.offline, "image_encoder": c.image_encoder,
         "text_encoder": c.text_encoder, "fusion": c.fusion, "fingerprint": c.fingerprint()}
        for c in list_configs()
    ]
    if args.json:
        print(json.dumps(configs, indent=2, ensure_ascii=False))
    else:
        _print_table(pd.DataFrame([
            {"name": c["name"], "offline": c["offline"], "image": c["image_encoder"]["type"],
             "text": c["text_encoder"]["type"], "fusion": c["fusion"]["type"], "description": c["description"]}
            for c in configs
        ]))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from workbench.runner import list_runs

    runs = list_runs(db=args.db)
    columns = ["run_id", "config", "eval_set", "status", "stage", "device", "seed", "created_at", "duration_s",
               "error"]
    if args.json:
        print(runs[columns].to_json(orient="records", date_format="iso"))
    else:
        _print_table(runs[columns].drop(columns=["error"]))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from workbench.runner import request_cancel

    request_cancel(args.run_id, db=args.db)
    print(f"Cancellation requested for {args.run_id}.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from workbench.demo import run_demo

    update, close = _bar("preparing the demo catalogue")
    try:
        result = run_demo(db=args.db, n_products=args.products, suite=args.suite, device=args.device,
                          catalog_progress=update, run=lambda config, eval_set: _run_with_bar(config, eval_set, args))
    finally:
        close()
    _print_table(result)
    if args.suite == "reference" and "run_id" in result and len(result):
        from workbench.demo import comparison_table

        print("\nComparison against the baseline (first config); 95% CIs, Holm-corrected p-values:")
        _print_table(comparison_table(list(result["run_id"]), result["run_id"].iloc[0], db=args.db))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from workbench.evaluation import load_metrics

    metrics = load_metrics(args.run_id, db=args.db)
    if args.json:
        payload = {r.name: {"value": _number(r.value), "ci_low": _number(r.ci_low), "ci_high": _number(r.ci_high)}
                   for r in metrics.itertuples()}
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        _print_table(metrics)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from workbench.analysis import paired_tests_frame
    from workbench.evaluation import compare_runs

    comparison = compare_runs(args.run_ids, db=args.db, baseline=args.baseline)
    if args.json:
        print(json.dumps(_json_safe(comparison), indent=2, allow_nan=False))
        return 0
    _print_table(pd.DataFrame(comparison["table"]))
    if comparison["tests"]:
        print(f"\nPaired tests against {comparison['baseline']} on {comparison['n_test_pairs']} test pairs in "
              f"{comparison['n_clusters']} product clusters (the unit of each test; p-values Holm-corrected):")
        _print_table(paired_tests_frame(comparison))
    return 0


def cmd_label_errors(args: argparse.Namespace) -> int:
    from workbench.label_errors import SIGNALS, label_error_candidates, signals_of

    table = label_error_candidates(args.run_ids, db=args.db, top=args.top, split=args.split)
    if args.json:
        payload = [{"pair_id": row["pair_id"], "score": _number(row["score"]), "signals": signals_of(row)}
                   for row in table.to_dict("records")]
        print(json.dumps(payload, indent=2, allow_nan=False))
        return 0
    shown = table[["rank", "pair_id", "score", *SIGNALS, "label", "split", "pair_kind", "text"]].copy()
    for column in ("score", *SIGNALS):
        shown[column] = shown[column].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}")
    shown["text"] = shown["text"].astype(str).str.slice(0, 60)
    _print_table(shown)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.reports import write_report

    path = write_report(args.run_ids, fmt=args.format, out=args.out, db=args.db)
    print(path)
    return 0


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
        _print_table(results[["perturbation", "severity", "metric", "value", "ci_low", "ci_high", "drop",
                              "drop_ci_low", "drop_ci_high", "n_changed", "n_items"]].round(4))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from workbench.explain import explain_pair, write_overlay
    from workbench.restore import restore_run_models

    models = restore_run_models(args.run_id, db=args.db, device=args.device)
    explanation = explain_pair(models, args.pair_id, image_method=args.image_method, text_method=args.text_method)
    if args.out:
        pair = models.pair(args.pair_id)
        path = write_overlay(explanation, models.load_image(pair["image_id"]), models.text(pair["text_id"]), args.out)
        print(f"Overlay written to {path}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(_json_safe(explanation.to_json()), indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print(f"pair {args.pair_id}: score {explanation.score:.4f}  ({explanation.method})")
    if explanation.image is not None:
        print(f"image relevance ({explanation.image.method}, rows × columns over the photo):")
        print(np.array2string(np.asarray(explanation.image.relevance), precision=3, suppress_small=True))
    if explanation.text is not None:
        print(f"words ({explanation.text.method}):")
        _print_table(pd.DataFrame(explanation.text.tokens, columns=["word", "attribution"]).round(4))
    for side, reason in explanation.reasons.items():
        print(f"{side} not explained: {reason}")
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workbench", description="Evaluation workbench for product image–text matching models.",
    )
    parser.add_argument("--db", default=None,
                        help=f"DuckDB file (default ${store.ENV_DB} or {store.DEFAULT_DB})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file (same as the global --db)")
        p.set_defaults(handler=handler)
        return p

    p = add("catalog", cmd_catalog, "Generate and store the synthetic bilingual product catalogue.")
    p.add_argument("--name", required=True)
    p.add_argument("--products", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replace", action="store_true", help="replace an existing eval set of that name")

    p = add("evalset", cmd_evalset, "Import, validate, list, show or delete eval sets.")
    p.add_argument("action", choices=["import", "validate", "list", "show", "delete"])
    p.add_argument("target", nargs="?", help="PATH for import/validate, NAME for show/delete")
    p.add_argument("--name")
    p.add_argument("--format", choices=["csv", "tsv", "jsonl", "parquet", "folder"])
    p.add_argument("--image-root")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="column mapping; FIELD is image, text, product, category, label, split, language, attr.NAME")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--strict", action="store_true", help="reject the whole import if any row is bad (default)")
    mode.add_argument("--lenient", action="store_true", help="import the valid rows, skip the bad ones")
    p.add_argument("--negatives", default="random,hard,attribute")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", help="write the per-row report as CSV")
    p.add_argument("--near-duplicates", action="store_true",
                   help="also report near-duplicate images (perceptual hash; decodes every image once)")

    p = add("run", cmd_run, "Run one configuration on an eval set; prints the run id last.")
    p.add_argument("--eval-set", required=True)
    p.add_argument("--config", required=True, help="a .toml/.json file or the name of a ready-made config")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="where encoding runs: this process, or a Ray cluster (pip install -r requirements-scale.txt)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="Ray cluster to join, e.g. ray://HOST:10001 or auto (default: start a local Ray instance)")

    p = add("configs", cmd_configs, "List the ready-made configurations.")
    p.add_argument("--json", action="store_true")

    p = add("runs", cmd_runs, "List runs.")
    p.add_argument("--json", action="store_true")

    p = add("cancel", cmd_cancel, "Ask a running run (from the app or another shell) to stop.")
    p.add_argument("run_id")

    p = add("demo", cmd_demo, "Bundled catalogue + default offline configs end to end; prints a results table.")
    p.add_argument("--products", type=int, default=2000)
    p.add_argument("--suite", default="default", choices=["default", "reference", "all"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])

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

    p = add("label-errors", cmd_label_errors,
            "Rank pairs by how likely their label is wrong (neighbourhood, run disagreement, margin).")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="finished runs of one eval set; the first one's "
                   "threshold gives the margin signal")
    p.add_argument("--top", type=int, default=50, help="how many candidates (default 50)")
    p.add_argument("--split", default=None, help="only pairs of this split (train, val or test)")
    p.add_argument("--json", action="store_true")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "evalset" and args.action in ("import", "validate", "show", "delete") and not args.target:
        parser.error(f"evalset {args.action} needs a {'PATH' if args.action in ('import', 'validate') else 'NAME'}")
    if args.command == "evalset":
        args.path = args.target
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except store.StoreLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
