"""The eval-set commands: ``catalog`` (the synthetic catalogue) and ``evalset`` (import, validate, list, show,
delete)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import pandas as pd

from workbench.cli.common import AddCommand, print_table, progress_bar


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


def cmd_catalog(args: argparse.Namespace) -> int:
    from workbench.data.evalsets import create_catalog_eval_set

    update, close = progress_bar("rendering catalogue")
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
        print_table(report)
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
    update, close = progress_bar("validating")
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
        print_table(outcome.report)
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
        print_table(evalsets.list_eval_sets(args.db))
        return 0
    if args.action == "show":
        info = evalsets.get_eval_set_info(args.target, args.db)
        for key in ("name", "source", "format", "created_at", "content_hash", "seed", "n_products", "n_images",
                    "n_texts", "n_pairs"):
            print(f"{key:>13}: {info[key]}")
        for key in ("pairs_by_split", "categories", "languages"):
            print(f"\n{key}:")
            print_table(info[key])
        print("\naudit:")
        for line in evalsets.audit_lines(info["name"], info["audit"]):
            print(f"  {line}")
        return 0
    if args.action == "delete":
        evalsets.delete_eval_set(args.target, args.db)
        print(f"Deleted eval set {args.target!r} and its runs.")
        return 0
    raise SystemExit(f"unknown evalset action {args.action}")


def register(add: AddCommand) -> None:
    """Declare this module's commands and their options."""
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
