"""The run's state (one ``RunState`` under ``_rb``), the one guard against orders in ``initialize``,
the engine's import graph, and the checks ``run_algorithm`` makes before it runs."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import rustybt_ray.engine as engine_pkg
from rustybt_ray.engine import NoCommission, NoSlippage, TradingAlgorithm, TrialPruned, run_algorithm, run_metrics
from rustybt_ray.engine.run import check_run
from rustybt_ray.engine.state import RunState
from rustybt_ray.errors import OrderError, RustyBTError, StrategyError

DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"]
NAN = float("nan")
FREE = {"commission": NoCommission(), "slippage": NoSlippage()}


@pytest.fixture(scope="module")
def bundle(make):
    # BBB has no bar at 2 and 3; CCC starts at bar 2.
    return make.bundle(DATES, {
        "AAA": {"open": [10, 11, 12, 13, 14, 15, 16], "close": [10, 11, 12, 13, 14, 15, 16]},
        "BBB": {"open": [20, 20, NAN, NAN, 24, 25, 26], "close": [20, 20, NAN, NAN, 24, 25, 26]},
        "CCC": {"open": [NAN, NAN, 30, 31, 32, 33, 34], "close": [NAN, NAN, 30, 31, 32, 33, 34]},
    })


# -- one attribute of engine state on the strategy object ------------------------------------------


def test_the_engine_puts_one_attribute_of_state_on_the_strategy(bundle):
    seen: dict[str, object] = {}

    class Probe(TradingAlgorithm):
        fast = 3

        def initialize(self) -> None:
            seen["initialize"] = sorted(vars(self))

        def handle_data(self, data) -> None:
            seen["handle_data"] = sorted(vars(self))
            seen["state"] = self._rb

    run_algorithm(Probe, bundle, params={"fast": 2}, **FREE)
    # the engine's names: _rb, plus zipline's bundle/assets/asset and the pinned parameter
    assert seen["initialize"] == ["_rb", "asset", "assets", "bundle", "fast"]
    assert seen["handle_data"] == seen["initialize"]
    state = seen["state"]
    assert type(state) is RunState and not hasattr(state, "__dict__")  # slots: hot-path reads
    assert state.started and state.params == {"fast": 2}


def test_a_pinned_parameter_still_wins_over_initialize_through_the_run_state(bundle):
    class Pinned(TradingAlgorithm):
        fast = 3

        def initialize(self) -> None:
            self.fast = 9
            self.other = 1

    res = run_algorithm(Pinned, bundle, params={"fast": 2}, **FREE)
    assert res.params == {"fast": 2}


# -- the one "no orders in initialize" guard, whatever the order path --------------------------------


ORDER_CALLS = {
    "order": lambda s: s.order(s.assets[2], 10),
    "order_value": lambda s: s.order_value(s.assets[2], 1000.0),
    "order_percent": lambda s: s.order_percent(s.assets[2], 0.1),
    "order_target": lambda s: s.order_target(s.assets[2], 10),
    "order_target_value": lambda s: s.order_target_value(s.assets[2], 1000.0),
    "order_target_percent": lambda s: s.order_target_percent(s.assets[2], 0.1),
    "order_target_percents": lambda s: s.order_target_percents([0.0, 0.0, 0.1]),
    "order_target_percents_twice": lambda s: s.order_target_percents([0.1, 0.1], assets=[s.assets[2]] * 2),
}


@pytest.mark.parametrize("start", [None, DATES[1], DATES[4]])
@pytest.mark.parametrize("call", sorted(ORDER_CALLS))
def test_every_order_path_refuses_orders_in_initialize(bundle, call, start):
    # CCC (assets[2]) has no price before bar 2: before, an order of it in initialize was
    # reported as "no price" by some paths and as an order in initialize by others.
    class Early(TradingAlgorithm):
        def initialize(self) -> None:
            ORDER_CALLS[call](self)

    with pytest.raises(OrderError, match=r"initialize\(\)"):
        run_algorithm(Early, bundle, start=start, **FREE)


def test_the_numpy_sizing_path_refuses_orders_in_initialize(make):
    n = 70  # from 65 assets on, order_target_percents sizes in NumPy
    rng = np.random.default_rng(3)
    close = 10 + rng.random((5, n))
    b = make.arrays(close, close)

    class Wide(TradingAlgorithm):
        def initialize(self) -> None:
            self.order_target_percents(np.full(n, 1.0 / n))

    with pytest.raises(OrderError, match=r"initialize\(\)"):
        run_algorithm(Wide, b, start=b.calendar[2], **FREE)


def test_zero_orders_in_initialize_are_no_orders(bundle):
    class Zero(TradingAlgorithm):
        def initialize(self) -> None:
            self.ids = [self.order(self.assets[0], 0), self.order_target_percent(self.assets[0], 0.0),
                        self.order_target_percents([0.0, 0.0, 0.0])]

        def handle_data(self, data) -> None:
            self.order_target_percent(self.assets[0], 0.5)

    seen = []

    class Keep(Zero):
        def analyze(self, result) -> None:
            seen.append(self.ids)

    res = run_algorithm(Keep, bundle, **FREE)
    assert seen == [[None, None, []]] and res.transactions.height > 0


def test_schedule_function_after_the_start_is_still_refused(bundle):
    class Late(TradingAlgorithm):
        def handle_data(self, data) -> None:
            self.schedule_function(lambda context, data: None)

    with pytest.raises(StrategyError, match="schedule_function"):
        run_algorithm(Late, bundle, **FREE)


# -- the engine's import graph has no cycle ----------------------------------------------------------


def _engine_import_graph() -> dict[str, set[str]]:
    # Every import statement counts: module level, inside functions, under TYPE_CHECKING.
    root = Path(engine_pkg.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        if path.name == "__init__.py":
            continue
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            deps |= {n.rsplit(".", 1)[-1] for n in names if n.startswith("rustybt_ray.engine.")}
        graph[path.stem] = deps
    return graph


def test_engine_modules_import_each_other_without_a_cycle():
    graph = _engine_import_graph()
    assert "rebalance" in graph["algorithm"] and "algorithm" not in graph["rebalance"]
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(node):] + [node])}")
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


# -- a run's arguments are checked before it runs (defect 2's engine part) -------------------------


@pytest.mark.parametrize("capital", ["abc", "100000", None, True, 0, 0.0, -1.0, NAN, math.inf, -math.inf])
def test_bad_capital_is_a_typed_error(bundle, capital):
    # The old code gave a NumPy TypeError for "abc" and ran with capital True (== 1).
    for run in (run_algorithm, run_metrics):
        with pytest.raises(StrategyError, match="capital_base must be a positive number"):
            run(TradingAlgorithm, bundle, capital_base=capital)
    with pytest.raises(RustyBTError):
        check_run(TradingAlgorithm, bundle, None, None, capital)


@pytest.mark.parametrize("capital", [1, 1e6, np.float64(5e4), np.int64(5000)])
def test_numeric_capital_of_any_kind_runs(bundle, capital):
    res = run_algorithm(TradingAlgorithm, bundle, capital_base=capital)
    assert res.capital_base == float(capital) and res.final_value == float(capital)


@pytest.mark.parametrize("start,end", [(DATES[4], DATES[1]), ("2024-01-10", "2024-01-09"),
                                       ("2024-01-05 12:00", "2024-01-05 11:00")])
def test_start_after_end_says_so(bundle, start, end):
    for run in (run_algorithm, run_metrics):
        with pytest.raises(StrategyError, match="is after end"):
            run(TradingAlgorithm, bundle, start=start, end=end)


# -- a finished run leaves no reference cycle behind -------------------------------------------------


def test_a_finished_or_failed_run_is_freed_without_the_cyclic_collector(bundle):
    # A strategy <-> state cycle kept every finished trial of a sweep (ledger, book, rows)
    # alive until a gc pass; trials ran measurably slower. Checked with gc disabled.
    import gc
    import weakref

    refs: list[weakref.ref] = []

    class Tracked(TradingAlgorithm):
        def initialize(self) -> None:
            refs.append(weakref.ref(self))  # the state, ledger and book are only reachable from it

        def handle_data(self, data) -> None:
            self.order_target_percent(self.assets[0], 0.5)

    class Failing(Tracked):
        def handle_data(self, data) -> None:
            raise ValueError("boom")

    gc.collect()
    gc.disable()
    try:
        run_metrics(Tracked, bundle, **FREE)
        run_algorithm(Tracked, bundle, **FREE)
        for failing in (lambda: run_metrics(Failing, bundle, **FREE),
                        lambda: run_metrics(Tracked, bundle, checkpoint=lambda step, m: True, checkpoint_every=2)):
            try:
                failing()
            except (ValueError, TrialPruned):  # the traceback is dropped at the end of this block
                pass
        alive = [i for i, r in enumerate(refs) if r() is not None]
        assert len(refs) == 4 and alive == []
    finally:
        gc.enable()
