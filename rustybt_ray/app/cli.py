"""The ``rustybt-ray`` command: the demo, sweeps from a file and their results, bundles, one backtest.

Errors the user can fix (a :class:`RustyBTError`, a missing file) print one line,
``rustybt-ray: error: ...``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rustybt_ray.engine.loading import load_strategy
from rustybt_ray.errors import ConfigError, RustyBTError, StrategyError, WorkerCountError

DEMO_STRATEGY = "rustybt_ray.examples.sma_crossover:SmaCrossover"


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value`` with ``value`` read as a Python literal when it is one (10, 0.5, True, 'x')."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise StrategyError(f"--param must look like name=value, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name.strip(), value


def _cmd_ingest(args: argparse.Namespace) -> int:
    from rustybt_ray.data import ingest_bundle

    source = args.csv_dir or args.parquet
    if args.csv_dir and not Path(args.csv_dir).is_dir():
        raise StrategyError(f"--csv-dir {args.csv_dir} is not a directory")
    info = ingest_bundle(args.name, source, frequency=args.frequency, lenient=args.lenient)
    print(f"ingested bundle {info.name!r}: {len(info.symbols)} symbols, {info.rows} rows, {info.frequency} bars")
    dropped = getattr(info, "dropped", None) or ()
    for d in dropped:
        print(f"  dropped: {d}")
    return 0


def _cmd_bundles(args: argparse.Namespace) -> int:
    from rustybt_ray.data import bundle_root, list_bundles

    infos = list_bundles()
    print("demo (built in)")
    for info in infos:
        if info.damaged:
            # A damaged bundle is listed, not hidden: the user must learn it needs fixing.
            print(f"{info.name}  DAMAGED: {info.problem}")
            print(f"  fix: re-ingest it (rustybt-ray ingest {info.name} --csv-dir DIR | --parquet PATH), "
                  f"or remove it (rm -r {bundle_root() / info.name})")
            continue
        print(f"{info.name}  {info.frequency}  {len(info.symbols)} symbols  {info.rows} rows")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from rustybt_ray.engine import run_algorithm

    strategy = load_strategy(args.strategy)
    params = dict(parse_param(p) for p in args.param or [])
    result = run_algorithm(strategy, args.bundle, start=args.start, end=args.end, capital_base=args.capital,
                           params=params, fill_price=args.fill_price, fractional_shares=args.fractional_shares)
    if args.json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.metrics.items()}
        print(json.dumps({"strategy": result.strategy, "params": result.params, "metrics": clean}, default=str))
    else:
        print(result.summary())
    return 0


def _print_top(trials: Any, objective: str, direction: str, params: list[str], k: int = 10) -> None:
    import polars as pl

    from rustybt_ray.app.sweep_run import top_table

    top = top_table(trials, objective, direction, k)
    cols = [c for c in ["number", *params, objective, "sharpe", "cagr", "max_drawdown", "n_trades", "status"]
            if c in top.columns]
    with pl.Config(tbl_rows=k, tbl_cols=len(cols), float_precision=4, tbl_hide_dataframe_shape=True):
        print(top.select(list(dict.fromkeys(cols))))


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    """The lines ``optimize``/``results`` print for a summary; KeyError/TypeError/ValueError on a damaged one."""
    lines = []
    if summary.get("kind") == "walk_forward":
        m = summary.get("oos_metrics") or {}
        lines.append(f"walk-forward: {summary['windows']} windows; out of sample Sharpe {m.get('sharpe')}, "
                     f"total return {m.get('total_return')}; efficiency {summary.get('walk_forward_efficiency')}")
        for k, params in enumerate(summary.get("best_params") or []):
            lines.append(f"  window {k}: {params}")
        return lines
    best = summary.get("best")
    if best:
        lines.append(f"best: trial #{best['number']} {best['params']}")
    over = summary.get("overfitting")
    if over:
        lines.append(f"overfitting: Deflated Sharpe Ratio {over['dsr']:.3f} over {over['n_trials']} trials "
                     f"(PSR vs 0 {over['psr_zero']:.3f}); PBO {over['pbo']:.2f}; "
                     f"P(OOS loss) {over['prob_oos_loss']:.2f}")
    lines.append(f"trials: {summary.get('n_complete')} complete, {summary.get('n_failed')} failed, "
                 f"{summary.get('n_pruned')} pruned, {summary.get('reused_trials')} reused from the journal")
    return lines


def _print_summary(summary: dict[str, Any]) -> None:
    print("\n".join(_summary_lines(summary)))


def _check_workers(workers: int | None) -> None:
    """``--workers`` is checked here, before Ray starts: a bad count must not cost a Ray start-up."""
    if workers is not None and workers < 1:
        raise WorkerCountError(f"--workers must be >= 1, got {workers}")


def _cmd_optimize(args: argparse.Namespace) -> int:
    from rustybt_ray.app.sweep_config import SweepConfig
    from rustybt_ray.app.sweep_run import run_sweep

    _check_workers(args.workers)
    cfg = SweepConfig.from_toml(args.sweep_file)
    if args.output:
        cfg.output = Path(args.output)
    if args.workers is not None:
        cfg.workers = args.workers
    if args.fractional_shares:
        cfg.fractional_shares = True
    report = run_sweep(cfg, resume=args.resume, progress=not args.no_progress, plots=not args.no_plots)
    s = report.summary
    if s.get("kind") == "search":
        params = list(cfg.parameters)
        direction = (report.result.direction if report.result is not None else "maximize")
        _print_top(report.result.trials, report.result.objective, direction, params)
    _print_summary(s)
    print(f"wrote {report.output} ({s['wall_s']:.1f} s)")
    if s.get("kind") == "search" and not s.get("n_complete") and s.get("n_failed"):
        # A sweep whose every trial failed is a broken strategy, not a result: say so, and fail.
        print(f"rustybt-ray: error: all {s['n_failed']} trials failed; the first error: "
              f"{_last_line(report.result)}", file=sys.stderr)
        return 1
    return 0


def _last_line(result: Any) -> str:
    """The last line of the first failed trial's traceback (the exception itself)."""
    errors = [e for e in result.trials["error"].to_list() if e] if "error" in result.trials.columns else []
    lines = [ln for ln in (errors[0] if errors else "").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no traceback recorded)"


def _cmd_results(args: argparse.Namespace) -> int:
    from rustybt_ray.app.sweep_run import read_results
    from rustybt_ray.metrics import METRIC_DIRECTIONS

    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    if (Path(args.directory) / "store.json").is_file():
        return _store_results(Path(args.directory), args.top)
    sweep, trials, summary = read_results(args.directory)
    objective = sweep["objective"][0]
    dirs = sweep.get("directions")
    direction = dirs[0] if dirs else METRIC_DIRECTIONS.get(objective, "maximize")
    direction = "maximize" if direction == "none" else direction
    lines: list[str] = []
    if summary is not None:
        try:
            lines = _summary_lines(summary)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            where = Path(args.directory) / "summary.json"
            raise ConfigError(f"{where} is incomplete or damaged ({type(exc).__name__}: {exc})") from None
    state = "finished" if summary is not None else "running (or stopped before the end)"
    print(f"{args.directory}: {sweep['strategy']} on {sweep['bundle']} {sweep.get('start')} .. {sweep.get('end')}; "
          f"{state}; {trials.height} trials so far")
    _print_top(trials, objective, direction, list(sweep.get("parameters") or []), args.top)
    if lines:
        print("\n".join(lines))
    return 0


def _store_results(directory: Path, k: int) -> int:
    """``results`` of a results store (``run(..., store=DIR)``), read lazily: a million trials print in seconds."""
    from rustybt_ray.metrics import METRIC_DIRECTIONS
    from rustybt_ray.optimize import OptimizationResult
    from rustybt_ray.optimize.store import ResultStore

    store = ResultStore(directory, readonly=True)
    if store.meta.get("result") is not None:
        result, state = OptimizationResult.open(directory), "finished"
    else:
        # A sweep still running, or whose driver died: rank what it committed by its Sharpe ratio
        # (or its first metric), since the objective is only saved when the sweep finishes.
        metrics = store.metric_names
        if not metrics:
            print(f"{directory}: results store; running (or stopped before the end); no trials committed yet")
            return 0
        objective = "sharpe" if "sharpe" in metrics else metrics[0]
        direction = METRIC_DIRECTIONS.get(objective, "maximize")
        result = OptimizationResult(None, objective=objective, direction="maximize" if direction == "none" else direction,
                                    param_names=store.param_names, metric_names=metrics, store=store)
        state = "running (or stopped before the end; rerun it with the same store= to resume)"
    print(f"{directory}: results store; {state}; {len(result)} trials, {result.n_complete} complete; "
          f"best by {result.objective} ({result.direction})")
    _print_top(result.top(k), result.objective, result.direction, result.param_names, k)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from rustybt_ray.app.demo import run_demo

    _check_workers(args.workers)
    run_demo(args.output, workers=args.workers, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rustybt-ray``."""
    parser = argparse.ArgumentParser(prog="rustybt-ray", description="Backtests and optimization sweeps on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="ingest CSV files or Parquet into a named bundle")
    p.add_argument("name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv-dir", help="directory of SYMBOL.csv files")
    src.add_argument("--parquet", help="long-format Parquet file or directory")
    p.add_argument("--frequency", help="bar frequency (inferred when omitted): 1d, 1h, 1m, ...")
    p.add_argument("--lenient", action="store_true", help="drop and report bad rows instead of failing")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("bundles", help="list bundles")
    p.set_defaults(func=_cmd_bundles)

    p = sub.add_parser("run", help="run one backtest and print its metrics")
    p.add_argument("strategy", nargs="?", default=DEMO_STRATEGY,
                   help=f"path/to/strategy.py:ClassName or module:ClassName (default {DEMO_STRATEGY})")
    p.add_argument("--bundle", default="demo")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--capital", type=float, default=100_000.0)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="strategy parameter (repeatable)")
    p.add_argument("--fill-price", choices=["open", "close"], default="open")
    p.add_argument("--fractional-shares", action="store_true", help="trade fractions of a share (default: whole)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("demo", help="grid, TPE and walk-forward sweeps on the demo bundle, with plots")
    p.add_argument("--output", default="rustybt-demo", help="output directory (a new one is named if it exists)")
    p.add_argument("--workers", type=int, help="worker actors (default: one per CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("optimize", help="run the sweep a TOML file describes (see examples/*.toml)")
    p.add_argument("sweep_file")
    p.add_argument("--resume", action="store_true", help="continue the sweep already in the output directory")
    p.add_argument("--output", help="override the file's output directory")
    p.add_argument("--workers", type=int, help="override the file's workers")
    p.add_argument("--fractional-shares", action="store_true",
                   help="trade fractions of a share (as fractional_shares = true in the file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_cmd_optimize)

    p = sub.add_parser("results", help="top trials and statistics of a finished or running sweep")
    p.add_argument("directory", help="an `optimize` output directory, or a results store (run(..., store=DIR))")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(func=_cmd_results)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rustybt-ray`` console script.

    A user-caused failure (a :class:`RustyBTError`, or an ``OSError``: a missing file, a
    path below a regular file, a full disk, no permission) prints one line naming the
    problem and returns 2; a bug still shows its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RustyBTError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(describe_os_error(exc))


def describe_os_error(exc: OSError) -> str:
    """``file: reason`` (both files for a rename) for an ``OSError``, on one line."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(files)}: {reason}" if files else reason


def _fail(message: str) -> int:
    # One line: a message that spans lines (a list of problems) is joined, never cut.
    one = "; ".join(part.strip() for part in message.splitlines() if part.strip()) or "failed"
    print(f"rustybt-ray: error: {one}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
