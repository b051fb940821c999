"""``SmaCrossoverNatural`` (``np.nanmean`` windows, ``data.can_trade``): the same strategy as ``SmaCrossover``
where no window holds a missing bar, and an earlier start on an asset that lists late."""

from __future__ import annotations

import numpy as np

from rustybt_ray.data.bundle import Bundle
from rustybt_ray.engine import run_algorithm, run_metrics
from rustybt_ray.examples.sma_crossover import SmaCrossover, SmaCrossoverNatural


def _bundle(late: int | None) -> Bundle:
    rng = np.random.default_rng(7)
    T, N = 160, 3
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.005, (T, N)))
    if late is not None:
        close[:late, 2] = np.nan
        open_[:late, 2] = np.nan
    cal = np.busday_offset(np.datetime64("2024-01-01", "D"), np.arange(T), roll="forward").astype("datetime64[ns]")
    vol = np.where(np.isnan(close), np.nan, 1e4)
    values = np.stack([open_, np.fmax(open_, close), np.fmin(open_, close), close, vol])
    return Bundle("nat", "1d", cal, ["A", "B", "C"], values)


def test_without_missing_bars_it_is_sma_crossover():
    b = _bundle(None)
    params = {"fast": 5, "slow": 20}
    start = b.calendar[20]  # every window full: history before the start is visible, never padded
    nat = run_algorithm(SmaCrossoverNatural, b, start, params=params)
    ref = run_algorithm(SmaCrossover, b, start, params=params)
    assert nat.transactions.height > 20
    assert nat.transactions.equals(ref.transactions)
    np.testing.assert_array_equal(nat.bars["portfolio_value"].to_numpy(), ref.bars["portfolio_value"].to_numpy())


def test_a_late_listing_is_traded_from_its_first_bars():
    late, slow = 60, 30
    b = _bundle(late)
    params = {"fast": 5, "slow": slow}
    first = {}
    for cls in (SmaCrossoverNatural, SmaCrossover):
        tx = run_algorithm(cls, b, params=params).transactions
        dates = tx.filter(tx["symbol"] == "C")["date"].to_numpy()
        first[cls] = int(np.searchsorted(b.calendar, dates.min())) if dates.size else None
    # Orders fill the bar after they are placed; SmaCrossover needs `slow` closes of C first.
    assert first[SmaCrossover] is not None and first[SmaCrossover] >= late + slow
    assert first[SmaCrossoverNatural] is not None and late < first[SmaCrossoverNatural] < late + slow
    assert run_metrics(SmaCrossoverNatural, b, params=params)[0]["n_transactions"] > 0
