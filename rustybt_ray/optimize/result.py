"""The outcome of a sweep: one table row per trial, the best trial, and Parquet persistence."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rustybt_ray.cluster.protocol import STATUSES as _STATUSES
from rustybt_ray.errors import SearchSpaceError
from rustybt_ray.files import atomic_write
from rustybt_ray.optimize.space import RESERVED_NAMES
from rustybt_ray.optimize.store import TRIAL_COLUMNS, ResultStore

_META_KEY = b"rustybt_ray.optimization"
_FORMAT_VERSION = 1
_DIRECTIONS = ("maximize", "minimize")
_FIXED_SCHEMA = TRIAL_COLUMNS
assert set(_FIXED_SCHEMA) == RESERVED_NAMES  # the space rejects exactly these parameter names


def _check_names(param_names: Sequence[str], metric_names: Sequence[str], objective: str, direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise SearchSpaceError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if objective not in metric_names:
        raise SearchSpaceError(f"objective {objective!r} is not among the metrics {list(metric_names)}")
    seen: set[str] = set()
    for name in [*param_names, *metric_names]:
        if name in RESERVED_NAMES:
            raise SearchSpaceError(f"name {name!r} collides with a column of the trials table")
        if name in seen:
            raise SearchSpaceError(f"name {name!r} is used twice among parameters and metrics")
        seen.add(name)


def param_series(name: str, values: list[Any]) -> pl.Series:
    """A column for one parameter; mixed numbers become floats, other mixes strings (Parquet needs one type)."""
    try:
        return pl.Series(name, values)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        pass
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)


def _clean(value: Any) -> Any:
    """A cell as plain Python, so best/params dicts hold ints and floats, not NumPy scalars."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) else value


class OptimizationResult:
    """All trials of a sweep as a polars table, with the objective that ranks them.

    Columns: ``number``, one per parameter, one per metric (f64), ``status``
    ("complete", "failed", or "pruned": stopped early, its metrics cover the bars it ran),
    ``error``, ``duration_s``, ``worker``, ``attempts`` (0: reused from the journal).
    """

    def __init__(
        self,
        trials: pl.DataFrame | None,
        *,
        objective: str,
        direction: str,
        param_names: Sequence[str],
        metric_names: Sequence[str],
        meta: Mapping[str, Any] | None = None,
        objectives: Sequence[tuple[str, str]] | None = None,
        store: ResultStore | None = None,
    ) -> None:
        if (trials is None) == (store is None):
            raise SearchSpaceError("an OptimizationResult needs either a trials table or a store, not both")
        param_names, metric_names = list(param_names), list(metric_names)
        _check_names(param_names, metric_names, objective, direction)
        objs = [(str(n), str(d)) for n, d in objectives] if objectives else [(objective, direction)]
        if objs[0] != (objective, direction):
            raise SearchSpaceError(f"objectives {objs} must start with the ranking objective {(objective, direction)}")
        for n, d in objs[1:]:
            _check_names([], metric_names, n, d)
        # A store lacks the columns no trial filled (all failed: no metrics): its scan adds them as nulls.
        columns = trials.columns if trials is not None else [*_FIXED_SCHEMA, *param_names, *metric_names]
        missing = [c for c in [*_FIXED_SCHEMA, *param_names, *metric_names] if c not in columns]
        if missing:
            raise SearchSpaceError(f"the trials table lacks column(s) {missing}")
        #: The store the trials live in, for a sweep kept out of core (None: in memory).
        self.store = store
        self._trials = trials.sort("number") if trials is not None else None
        self.objective = objective
        self.direction = direction
        self.param_names = param_names
        self.metric_names = metric_names
        self.meta: dict[str, Any] = dict(meta or {})
        self.objectives: list[tuple[str, str]] = objs
        #: Per-bar float32 returns by trial number: a dict in memory, read from disk for a store.
        self.returns: Mapping[int, Any] = {} if store is None else StoreReturns(store)

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        param_names: Sequence[str],
        metric_names: Sequence[str],
        objective: str,
        direction: str,
        meta: Mapping[str, Any] | None = None,
        objectives: Sequence[tuple[str, str]] | None = None,
    ) -> OptimizationResult:
        """Build from scheduler records ``{"number", "params", "metrics", "status", "error", "duration_s", "worker", "attempts"}``.

        ``metrics`` may be None (failed trial); a missing metric or parameter is null, and
        metrics not in ``metric_names`` are left out.
        """
        _check_names(param_names, metric_names, objective, direction)
        for r in records:
            if r.get("status") not in _STATUSES:
                raise SearchSpaceError(
                    f"record {r.get('number')!r}: status must be one of {', '.join(_STATUSES)}, got {r.get('status')!r}")
        cols: dict[str, pl.Series] = {"number": pl.Series("number", [r["number"] for r in records], dtype=pl.Int64)}
        for name in param_names:
            cols[name] = param_series(name, [(r.get("params") or {}).get(name) for r in records])
        for name in metric_names:
            vals = [(r.get("metrics") or {}).get(name) for r in records]
            cols[name] = pl.Series(name, [None if v is None else float(v) for v in vals], dtype=pl.Float64)
        for name in ("status", "error", "duration_s", "worker", "attempts"):
            cols[name] = pl.Series(name, [r.get(name) for r in records], dtype=_FIXED_SCHEMA[name])
        return cls(
            pl.DataFrame(list(cols.values())),
            objective=objective,
            direction=direction,
            param_names=param_names,
            metric_names=metric_names,
            meta=meta,
            objectives=objectives,
        )

    # -- views ------------------------------------------------------------------------

    @property
    def trials(self) -> pl.DataFrame:
        """Every trial, sorted by number (for a result kept in a store this reads the whole table: see :meth:`scan`)."""
        if self._trials is None:
            return self.scan().sort("number").collect()
        return self._trials

    @property
    def lazy(self) -> bool:
        """True when the trials live in a :class:`~rustybt_ray.optimize.store.ResultStore` on disk."""
        return self._trials is None

    def scan(self) -> pl.LazyFrame:
        """The trials table as a polars ``LazyFrame``: filter, select and aggregate without loading every trial."""
        if self._trials is None:
            assert self.store is not None
            lf = self.store.scan()
            have = set(lf.collect_schema().names())
            absent = [n for n in [*self.param_names, *self.metric_names] if n not in have]
            if absent:
                lf = lf.with_columns([pl.lit(None, dtype=pl.Float64).alias(n) for n in absent])
            # The columns in the order a table built in memory has them.
            return lf.select(["number", *self.param_names, *self.metric_names, *list(_FIXED_SCHEMA)[1:]])
        return self._trials.lazy()

    def filter(self, *predicates: Any, **constraints: Any) -> pl.DataFrame:
        """The trials matching polars predicates (``pl.col("sharpe") > 1``) and ``column=value`` constraints, by number."""
        return self.scan().filter(*predicates, **constraints).sort("number").collect()

    def __len__(self) -> int:
        if self._trials is None:
            return int(self.scan().select(pl.len()).collect().item())
        return self._trials.height

    def _count(self, status: str) -> int:
        if self._trials is None:
            return int(self.scan().filter(pl.col("status") == status).select(pl.len()).collect().item())
        return int((self._trials["status"] == status).sum())

    @property
    def n_complete(self) -> int:
        """Trials that finished."""
        return self._count("complete")

    @property
    def n_pruned(self) -> int:
        """Trials stopped early by a pruner."""
        return self._count("pruned")

    @property
    def n_failed(self) -> int:
        """Trials that failed after their retries."""
        return self._count("failed")

    def top(self, k: int = 10) -> pl.DataFrame:
        """The ``k`` best complete trials by the objective (NaN and null last, ties by number)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        key = "__rank_key"  # NaN sorts as the largest float in polars; make it null to send it last
        ranked = (
            self.scan().filter(pl.col("status") == "complete")
            .with_columns(pl.col(self.objective).fill_nan(None).alias(key))
            .sort([key, "number"], descending=[self.direction == "maximize", False], nulls_last=True)
            .drop(key)
        )
        return ranked.head(k).collect()

    @property
    def best(self) -> dict[str, Any] | None:
        """The best complete trial as ``{"number", "params", "metrics"}``; None when no trial has a finite-or-inf objective."""
        row = self.top(1)
        if row.height == 0:
            return None
        rec = row.row(0, named=True)
        value = rec[self.objective]
        if value is None or math.isnan(value):
            return None
        return {
            "number": int(rec["number"]),
            "params": {n: _clean(rec[n]) for n in self.param_names},
            "metrics": {n: _clean(rec[n]) for n in self.metric_names},
        }

    @property
    def best_params(self) -> dict[str, Any] | None:
        """Parameters of :attr:`best`, or None."""
        best = self.best
        return None if best is None else best["params"]

    def pareto_front(self) -> pl.DataFrame:
        """The complete trials no other complete trial dominates on all :attr:`objectives`, sorted by number.

        A trial dominates another when it is at least as good on every objective and
        better on one. Trials with a NaN or null objective are left out. With a single
        objective this is the best trial(s).
        """
        names = [n for n, _ in self.objectives]
        done = (self.scan().filter(pl.col("status") == "complete")
                .filter(pl.all_horizontal([pl.col(n).is_not_null() & pl.col(n).is_not_nan() for n in names])))
        if self._trials is None:
            done = done.select("number", *names)  # the front's rows are read in full once it is known
        done = done.collect()
        if done.height == 0:
            return self.scan().head(0).collect() if self._trials is None else done
        # Orient every objective so bigger is better, then compare all pairs, a block of
        # rows at a time so 100k trials need megabytes, not gigabytes.
        pts = np.column_stack([done[n].to_numpy() * (1.0 if d == "maximize" else -1.0) for n, d in self.objectives])
        dominated = np.zeros(len(pts), dtype=bool)
        for lo in range(0, len(pts), 256):
            block = pts[lo:lo + 256, None, :]
            dominated |= ((block >= pts[None]).all(axis=2) & (block > pts[None]).any(axis=2)).any(axis=0)
        front = done.filter(pl.Series(~dominated)).sort("number")
        if self._trials is None:
            return self.filter(pl.col("number").is_in(front["number"].to_list()))
        return front

    def overfitting(self, n_splits: int = 16) -> dict[str, float | int]:
        """Deflated Sharpe Ratio of :attr:`best` and the PBO of the sweep (see :mod:`rustybt_ray.optimize.overfitting`).

        Uses every complete trial's per-bar returns (kept when
        ``OptimizationConfig.return_daily_returns`` is on, the default) and the true
        number of trials tried: complete and pruned, distinct parameter sets
        (``n_with_returns`` says how many of them had whole returns for the PBO; trials whose
        returns are constant, such as one that never trades, have no Sharpe ratio: they are left
        out of the matrix, counted in ``n_constant_returns``, and still deflate the best).
        Sharpe values in the report are per bar; ``sharpe_annual`` is the best trial's,
        annualised with the bundle's bars per year.
        """
        from rustybt_ray.errors import OverfittingError
        from rustybt_ray.optimize.overfitting import constant_columns, overfitting_report

        key = ("overfitting", n_splits)
        cached = self.__dict__.setdefault("_cache", {}).get(key)
        if cached is not None:
            return dict(cached)
        if self._trials is None:
            report = self._overfitting_from_store(n_splits)
            self._cache[key] = report
            return dict(report)
        best = self.best
        done = self._trials.filter(pl.col("status") == "complete")["number"].to_list()
        numbers = [n for n in done if n in self.returns]
        if best is None or best["number"] not in self.returns:
            raise OverfittingError(
                "overfitting statistics need the trials' per-bar returns: run with "
                "OptimizationConfig(return_daily_returns=True) (the default)")
        if len(numbers) < 2:
            raise OverfittingError(f"overfitting statistics need at least 2 complete trials, got {len(numbers)}")
        lengths = {len(self.returns[n]) for n in numbers}
        if len(lengths) != 1:
            raise OverfittingError(f"the trials' returns have different lengths {sorted(lengths)}: one date range is needed")
        matrix = np.column_stack([np.asarray(self.returns[n], dtype=np.float64) for n in numbers])
        # A bar with no return yet (NaN before the first valuation) carries no information.
        matrix = np.nan_to_num(matrix, nan=0.0)
        # A trial that never trades has constant returns and no Sharpe ratio: it cannot be
        # selected, so it leaves the matrix, but it was tried, so it still deflates (n_tried).
        flat = constant_columns(matrix)
        if flat.any():
            if flat[numbers.index(best["number"])]:
                raise OverfittingError(f"the best trial (#{best['number']}) has constant returns (it never traded?): "
                                       "its Sharpe ratio, hence the DSR, is undefined")
            matrix = matrix[:, ~flat]
            numbers = [n for n, f in zip(numbers, flat.tolist()) if not f]
            if len(numbers) < 2:
                raise OverfittingError(f"overfitting statistics need at least 2 trials whose returns vary, got "
                                       f"{len(numbers)} ({int(flat.sum())} have constant returns)")
        report = overfitting_report(matrix, numbers=numbers, best=numbers.index(best["number"]), n_splits=n_splits)
        # The DSR deflates by every trial *tried*, not only those that ran to the end:
        # pruned trials were candidates too. Count distinct parameter sets (a repeat
        # answered from the journal is the same trial), and deflate again if it differs.
        n_tried = self._n_tried()
        if n_tried > report["n_trials"]:
            from rustybt_ray.optimize.overfitting import deflated_sharpe_ratio

            d = deflated_sharpe_ratio(matrix[:, numbers.index(best["number"])], n_tried, report["sharpe_variance"])
            report.update(n_trials=n_tried, expected_max_sharpe=d.expected_max_sharpe, dsr=d.dsr)
        report["n_with_returns"] = len(numbers)
        report["n_constant_returns"] = int(flat.sum())
        ppy = self.meta.get("periods_per_year")
        report["sharpe_annual"] = report["sharpe"] * math.sqrt(ppy) if ppy else math.nan
        self._cache[key] = report
        return dict(report)

    def _n_tried(self) -> int:
        """Distinct parameter sets among complete and pruned trials: the N that deflates the best Sharpe."""
        tried = self.scan().filter(pl.col("status").is_in(["complete", "pruned"]))
        if self.param_names:
            tried = tried.select(self.param_names).unique()
        return int(tried.select(pl.len()).collect().item())

    def _overfitting_from_store(self, n_splits: int) -> dict[str, float | int]:
        """:meth:`overfitting` of a stored sweep: the returns are streamed from disk in chunks of trials."""
        from rustybt_ray.errors import OverfittingError
        from rustybt_ray.optimize.overfitting_scale import report_from_chunks

        assert self.store is not None
        best = self.best
        numbers, offsets, lengths = self.store.returns_index()
        complete = self.scan().filter(pl.col("status") == "complete").select("number").collect()["number"].to_numpy()
        keep = np.isin(numbers, complete)
        numbers, offsets, lengths = numbers[keep], offsets[keep], lengths[keep]
        if best is None or not np.any(numbers == best["number"]):
            raise OverfittingError(
                "overfitting statistics need the trials' per-bar returns: run with "
                "OptimizationConfig(return_daily_returns=True) (the default)")
        if len(numbers) < 2:
            raise OverfittingError(f"overfitting statistics need at least 2 complete trials, got {len(numbers)}")
        distinct = np.unique(lengths)
        if len(distinct) != 1:
            raise OverfittingError(f"the trials' returns have different lengths {distinct.tolist()}: "
                                   "one date range is needed")
        length = int(distinct[0])
        report = dict(report_from_chunks(lambda: self.store.iter_returns(numbers, offsets, length),
                                         best["number"], n_splits=n_splits, n_tried=self._n_tried()))
        ppy = self.meta.get("periods_per_year")
        report["sharpe_annual"] = report["sharpe"] * math.sqrt(ppy) if ppy else math.nan
        return report

    def to_pandas(self) -> pd.DataFrame:
        """The trials table as a pandas DataFrame."""
        return self.trials.to_pandas()

    def __repr__(self) -> str:
        best = self.best
        if best is None:
            head = "no complete trial"
        else:
            head = f"best #{best['number']} {self.objective}={best['metrics'][self.objective]:.6g} params={best['params']}"
        return (
            f"OptimizationResult({self.objective!r} {self.direction}, trials={len(self)}, "
            f"complete={self.n_complete}, failed={self.n_failed}"
            + (f", pruned={self.n_pruned}" if self.n_pruned else "") + f", {head})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OptimizationResult):
            return NotImplemented
        return (
            (self.objectives, self.param_names, self.metric_names, self.meta)
            == (other.objectives, other.param_names, other.metric_names, other.meta)
            and self.trials.equals(other.trials, null_equal=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable meta; equality is by value

    # -- persistence ------------------------------------------------------------------

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file in the same directory, then ``os.replace``); returns the path.

        ``meta`` must be JSON-serializable; it is stored in the file's key-value metadata.
        On any error the temp file is removed and an existing file at ``path`` is untouched.
        """
        path = Path(path)
        header = self._header()
        encoded = json.dumps(header, allow_nan=True).encode()
        if self._trials is None:
            # Streamed by polars from the store's shards: the table is never built in Python.
            with atomic_write(path) as fh:
                self.scan().sort("number").sink_parquet(fh, metadata={_META_KEY.decode(): encoded.decode()})
            return path
        table = self._trials.to_arrow()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: encoded})
        with atomic_write(path) as fh:
            pq.write_table(table, fh)
        return path

    def _header(self) -> dict[str, Any]:
        return {"format": _FORMAT_VERSION, "objective": self.objective, "direction": self.direction,
                "param_names": self.param_names, "metric_names": self.metric_names, "meta": self.meta,
                "objectives": self.objectives}

    @classmethod
    def from_store(
        cls,
        store: ResultStore,
        *,
        objective: str,
        direction: str,
        meta: Mapping[str, Any] | None = None,
        objectives: Sequence[tuple[str, str]] | None = None,
        metric_names: Sequence[str] | None = None,
    ) -> OptimizationResult:
        """A result read lazily from ``store`` (its header is saved in the store, for :meth:`open`)."""
        names = list(metric_names) if metric_names is not None else store.metric_names
        result = cls(None, objective=objective, direction=direction, param_names=store.param_names,
                     metric_names=names, meta=meta, objectives=objectives, store=store)
        if not store.readonly:
            store.set_header(json.loads(json.dumps(result._header(), allow_nan=True, default=str)))
        return result

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> OptimizationResult:
        """The result of a sweep run with ``store=path``, read lazily (also while, or after, its driver died).

        A sweep whose driver died before the end has no saved header yet: its table is
        what was committed, ranked by the store's first metric unless told otherwise.
        """
        from rustybt_ray.optimize.store import ResultStore

        store = ResultStore(path, readonly=True)
        header = store.meta.get("result")
        if header is None:
            raise SearchSpaceError(f"{path}: the sweep writing this store has not finished (no result header yet); "
                                   "rerun it with the same store= to resume it")
        return cls(None, objective=header["objective"], direction=header["direction"],
                   param_names=header["param_names"], metric_names=header["metric_names"], meta=header["meta"],
                   objectives=[tuple(o) for o in header.get("objectives") or []] or None, store=store)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> OptimizationResult:
        """Read a file written by :meth:`to_parquet`."""
        table: pa.Table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:  # written by polars from a store: the key is in the file's metadata, not the schema's
            raw = (pq.read_metadata(path).metadata or {}).get(_META_KEY)
        if raw is None:
            raise SearchSpaceError(f"{path}: not an OptimizationResult file (no {_META_KEY.decode()} metadata)")
        header = json.loads(raw)
        if header.get("format") != _FORMAT_VERSION:
            raise SearchSpaceError(f"{path}: unknown OptimizationResult format {header.get('format')!r}")
        frame = pl.from_arrow(table.replace_schema_metadata(None))
        assert isinstance(frame, pl.DataFrame)
        return cls(
            frame,
            objective=header["objective"],
            direction=header["direction"],
            param_names=header["param_names"],
            metric_names=header["metric_names"],
            meta=header["meta"],
            objectives=[tuple(o) for o in header.get("objectives") or []] or None,
        )


class StoreReturns(Mapping[int, np.ndarray]):
    """A stored sweep's per-bar returns by trial number, read from disk on access (float32)."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _idx(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._index is None:
            self._index = self._store.returns_index()
        return self._index

    def __getitem__(self, number: int) -> np.ndarray:
        numbers, offsets, lengths = self._idx()
        i = int(np.searchsorted(numbers, number))
        if i >= len(numbers) or numbers[i] != number:
            raise KeyError(number)
        return self._store.read_returns(int(offsets[i]), int(lengths[i]))

    def __iter__(self) -> Iterator[int]:
        return iter(self._idx()[0].tolist())

    def __len__(self) -> int:
        return len(self._idx()[0])

    def __contains__(self, number: object) -> bool:
        numbers = self._idx()[0]
        if not isinstance(number, (int, np.integer)):
            return False
        i = int(np.searchsorted(numbers, number))
        return i < len(numbers) and numbers[i] == number
