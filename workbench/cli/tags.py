"""``tags``: list, add and remove product tags of an eval set, and export a tag's or a saved view's products."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.cli.common import AddCommand, print_table


def cmd_tags(args: argparse.Namespace) -> int:
    from workbench.data import tags

    if args.action == "list":
        counts, views = tags.list_tags(args.eval_set, db=args.db), tags.list_views(args.eval_set, db=args.db)
        if args.json:
            listed = [{"name": name, "filters": filters} for name, filters in zip(views["name"], views["filters"],
                                                                                   strict=True)]
            print(json.dumps({"tags": counts.to_dict("records"), "views": listed}, ensure_ascii=False, indent=2))
            return 0
        print_table(counts)
        print("\nSaved views:")
        print_table(views)
        return 0
    if args.action in ("add", "remove"):
        if not args.tag or not args.products:
            raise ValueError(f"tags {args.action} needs --tag TAG and at least one --product PRODUCT_ID")
        change = tags.tag_products if args.action == "add" else tags.untag_products
        n = change(args.eval_set, args.products, args.tag, db=args.db)
        print(f"{'tagged' if args.action == 'add' else 'untagged'} {n} of {len(set(args.products))} product(s)")
        return 0
    if args.out is None or (args.tag is None) == (args.view is None):
        raise ValueError("tags export needs --out FILE.csv|FILE.parquet and exactly one of --tag TAG or --view NAME")
    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if args.tag is not None:
        products = tags.tagged_products(args.eval_set, args.tag, db=args.db)
    else:
        products = tags.view_products(args.eval_set, args.view, db=args.db)
    data = tags.export_selection(tags.selection_items(args.eval_set, products, db=args.db), fmt)
    out.write_bytes(data)
    print(f"wrote {out} ({len(products)} product(s))")
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's commands and their options."""
    p = add("tags", cmd_tags,
            "Product tags of an eval set: list them (with saved views), add or remove one on products, or export a "
            "tag's or a saved view's products (one row per image and text) as CSV or Parquet.")
    p.add_argument("action", choices=["list", "add", "remove", "export"])
    p.add_argument("eval_set", metavar="EVAL_SET")
    p.add_argument("--tag", default=None, help="the tag to add, remove or export")
    p.add_argument("--product", dest="products", action="append", default=[], metavar="PRODUCT_ID",
                   help="a product to tag or untag (repeat for several)")
    p.add_argument("--view", default=None, metavar="NAME", help="export: a saved view's products instead of a tag's")
    p.add_argument("--out", default=None, metavar="FILE", help="export: FILE.csv or FILE.parquet")
    p.add_argument("--json", action="store_true", help="list: print {tags: [{tag, n_products}], views: [...]}")
