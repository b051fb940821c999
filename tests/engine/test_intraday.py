"""Intraday smoke test on a synthetic hourly bundle: history, scheduling, before_trading_start, daily returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rustybt_ray.engine import NoCommission, NoSlippage, TradingAlgorithm, run_algorithm, time_rules
from rustybt_ray.errors import HistoryError

DAYS = ["2024-05-06", "2024-05-07", "2024-05-08", "2024-05-09"]
HOURS = ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]


def _stamps() -> list[str]:
    out = [f"{d}T{h}" for d in DAYS[:3] for h in HOURS]
    out += [f"{DAYS[3]}T{h}" for h in HOURS[:4]]  # a short session: 09:30 .. 12:30
    return out


@pytest.fixture(scope="module")
def hourly(make):
    stamps = _stamps()
    n = len(stamps)
    close = 100 + np.arange(n, dtype=float)
    return make.bundle(stamps, {
        "AAA": {"open": close - 0.5, "close": close},
        "BBB": {"open": 2 * close - 1, "close": 2 * close},
    }, frequency="1h", name="hourly")


def test_hourly_run(hourly):
    stamps = pd.DatetimeIndex(_stamps())
    log: dict[str, list] = {"open1h": [], "close": [], "close60": [], "btd": [], "windows": []}

    class Intraday(TradingAlgorithm):
        def initialize(self) -> None:
            self.schedule_function(lambda c, d: log["open1h"].append(c.get_datetime()),
                                   time_rule=time_rules.market_open(hours=1))
            self.schedule_function(self.flatten, time_rule=time_rules.market_close())
            self.schedule_function(lambda c, d: log["close60"].append(c.get_datetime()),
                                   time_rule=time_rules.market_close(minutes=60))

        def flatten(self, data) -> None:
            log["close"].append(self.get_datetime())
            for a in self.assets:
                self.order_target(a, 0)

        def before_trading_start(self, data) -> None:
            log["btd"].append((self.get_datetime(), data.current(self.assets[0], "close")))

        def handle_data(self, data) -> None:
            w = data.history(self.assets, "close", 3, "1h", return_type="array")
            log["windows"].append(w.copy())
            if data.bar_index % 7 == 2:
                self.order(self.assets[0], 10)
                self.order(self.assets[1], -5)

    res = run_algorithm(Intraday, hourly, commission=NoCommission(), slippage=NoSlippage())
    assert res.bars.height == len(stamps)
    # scheduled bars, per session
    assert log["open1h"] == [pd.Timestamp(f"{d} 10:30") for d in DAYS]
    assert log["close"] == [pd.Timestamp(f"{d} 15:30") for d in DAYS[:3]] + [pd.Timestamp(f"{DAYS[3]} 12:30")]
    assert log["close60"] == [pd.Timestamp(f"{d} 14:30") for d in DAYS[:3]] + [pd.Timestamp(f"{DAYS[3]} 11:30")]
    # before_trading_start: once per session, seeing the previous session's last bar (before the first: no bar)
    closes = hourly.close[:, 0]
    assert np.isnan(log["btd"][0][1])
    assert [x[1] for x in log["btd"][1:]] == [closes[6], closes[13], closes[20]]
    # history ends at the current bar
    for t, w in enumerate(log["windows"]):
        assert w[-1].tolist() == hourly.close[t].tolist()
        if t < 2:
            assert np.isnan(w[: 2 - t]).all()
    # daily returns: one per session, from the last bar of each session
    pv = res.bars["portfolio_value"].to_numpy()
    last = [6, 13, 20, 24]
    assert res.daily_returns.shape == (4,)
    expected = np.array([pv[6] / 100_000 - 1] + [pv[last[i]] / pv[last[i - 1]] - 1 for i in range(1, 4)])
    np.testing.assert_allclose(res.daily_returns, expected, rtol=0, atol=1e-15)
    assert res.returns.shape == (len(stamps),)
    # the trades happened: orders at 11:30 fill at 12:30's open; flattening at 15:30 fills at next day's 09:30
    tx = res.transactions
    assert tx.height > 0
    first = tx.row(0, named=True)
    assert first["date"] == pd.Timestamp(f"{DAYS[0]} 12:30") and first["price"] == hourly.open[3, 0]
    assert (res.positions[[7, 14, 21]] == 0).all()  # flat at each next session's first bar


def test_hourly_history_frequency(hourly):
    out: list = []

    class Freq(TradingAlgorithm):
        def handle_data(self, data) -> None:
            if data.bar_index == 5:
                out.append(data.history(self.assets[0], "close", 2, "hourly", return_type="array").tolist())
                with pytest.raises(HistoryError, match="1h"):  # '1d' works: daily bars from the hours
                    data.history(self.assets[0], "close", 2, "2h")
                with pytest.raises(HistoryError):
                    data.history(self.assets[0], "close", 2, "1m")

    run_algorithm(Freq, hourly)
    assert out == [[104.0, 105.0]]
