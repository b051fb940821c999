"""The user guide's Feature 1 examples run as written (with rustybt -> rustybt_ray)."""

from __future__ import annotations

import numpy as np

from rustybt_ray import TradingAlgorithm, run_algorithm


class BeforeStrategy(TradingAlgorithm):
    """The guide's 'Before (DataFrame Return - Default)' example, plus a record of its SMA."""

    def initialize(self):
        self.lookback = 20

    def handle_data(self, data):
        prices = data.history(assets=self.asset, fields="close", bar_count=self.lookback, frequency="1d")
        sma = prices.mean()
        self.record(sma=sma)


class AfterStrategy(TradingAlgorithm):
    """The guide's 'After (NumPy Array Return - Optimized)' example, plus a record of its SMA."""

    def initialize(self):
        self.lookback = 20

    def handle_data(self, data):
        prices = data.history(
            assets=self.asset, fields="close", bar_count=self.lookback, frequency="1d", return_type="array"
        )
        sma = np.mean(prices)
        self.record(sma=sma)


def test_before_and_after_agree_and_match_numpy():
    before = run_algorithm(BeforeStrategy, "demo", "2024-01-02", "2024-06-28")
    after = run_algorithm(AfterStrategy, "demo", "2024-01-02", "2024-06-28")
    a = after.bars["sma"].to_numpy()
    np.testing.assert_allclose(before.bars["sma"].to_numpy(), a, rtol=1e-12)
    # Independent: a 20-day rolling mean of the first asset's closes, ending at each bar.
    from rustybt_ray import load_bundle

    b = load_bundle("demo")
    i0, i1 = b.index_range("2024-01-02", "2024-06-28")
    close = b.close[:, 0]
    expected = np.array([close[t - 19 : t + 1].mean() for t in range(i0, i1)])
    np.testing.assert_allclose(a, expected, rtol=1e-12)


def test_optimizer_value_wins_over_initialize_assignment():
    # The guide assigns self.lookback = 20 in initialize; a run that varies lookback must use its value.
    run5 = run_algorithm(AfterStrategy, "demo", "2024-03-01", "2024-03-28", params={"lookback": 5})
    run20 = run_algorithm(AfterStrategy, "demo", "2024-03-01", "2024-03-28")
    assert run5.params["lookback"] == 5
    assert not np.allclose(run5.bars["sma"].to_numpy(), run20.bars["sma"].to_numpy())
