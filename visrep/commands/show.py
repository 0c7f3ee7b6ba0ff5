"""``visrep show [PATH]``: result records as a table."""
from __future__ import annotations

from . import Command


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
    return str(v)


def _add_show(p):
    p.add_argument("path", nargs="?", help="results directory or record file (default: ./results)")
    p.add_argument("--metric", "-k", action="append", help="metric columns to show (default: all)")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")


def _cmd_show(args) -> int:
    import pandas as pd

    from ..results import load
    df = load(args.path)
    if df.empty:
        print("no records")
        return 0
    metric_cols = [c for c in df.columns if c.startswith("metrics.")]
    if args.metric:
        metric_cols = [f"metrics.{m}" for m in args.metric if f"metrics.{m}" in df.columns]
    param_cols = [c for c in df.columns if c.startswith("params.") and df[c].nunique(dropna=True) > 1]
    cols = ["dataset", "protocol", "method", *param_cols, *metric_cols]
    if "timings.method" in df.columns:
        df["seconds"] = df["timings.method"]
        cols.append("seconds")
    table = df[cols].sort_values(["dataset", "protocol", "method", *param_cols])
    table = table.rename(columns=lambda c: c.split(".", 1)[-1]).astype(object)
    table = table.where(table.notna(), "")
    if args.json:
        print(table.to_json(orient="records", indent=1))
    else:
        with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_columns", 50):
            print(table.to_string(index=False, formatters={c: _fmt for c in table.columns}))
    return 0


COMMAND = Command("show", _add_show, _cmd_show, "show result records as a table", order=30)
