"""What every command shares: tqdm progress, table printing, JSON without NaN, and the type of ``add``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

Handler = Callable[[argparse.Namespace], int]
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]
"""``add(name, handler, help)``: a new subcommand's parser, with ``--db`` and its handler set."""


def progress_bar(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm progress callback (done, total) and a closer."""
    # disable=None: a bar in a terminal, nothing in logs
    bar = tqdm(desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True, disable=None)

    def update(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.refresh()

    return update, bar.close


def print_table(frame: pd.DataFrame) -> None:
    """The whole frame (up to 200 rows) without its index; "(none)" when empty."""
    with pd.option_context("display.max_rows", 200, "display.max_columns", 30, "display.width", 160):
        print(frame.to_string(index=False) if not frame.empty else "(none)")


def json_number(value: Any) -> float | None:
    """JSON has no NaN: undefined values (a metric without a CI, say) are null."""
    return None if value is None or pd.isna(value) else float(value)


def json_safe(value: Any) -> Any:
    """Nested dicts and lists with every number a float and every undefined one None, for ``allow_nan=False``."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | bool) or value is None:
        return value
    return json_number(value)
