"""The command line: ``python -m workbench [--db PATH] COMMAND …``.

Each module of this package holds a group of commands: their handlers and, in ``register``, their options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench import store
from workbench.cli import diagnostics, evalsets, results, runs, search, tags
from workbench.cli.common import Handler

EXIT_BAD_INPUT = 2
COMMAND_GROUPS = (evalsets, runs, results, diagnostics, search, tags)  # in the order `--help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workbench", description="Evaluation workbench for product image–text matching models.",
    )
    parser.add_argument("--db", default=None,
                        help=f"DuckDB file (default ${store.ENV_DB} or {store.DEFAULT_DB})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file (same as the global --db)")
        p.set_defaults(handler=handler)
        return p

    for group in COMMAND_GROUPS:
        group.register(add)
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
