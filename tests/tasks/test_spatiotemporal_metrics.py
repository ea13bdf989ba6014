"""The suite's MAPE zero tolerance against a hand-computed table, and its record per data set.

Oracle: two horizon steps of four nodes worked out by hand below (sz_taxi-like targets: a
1e-17 "speed" that is zero up to rounding, an exact 0, and one 5e-5 below the tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eads import ConfigError
from eads.bench.metrics import forecast_metrics, forecast_metrics_report
from eads.tasks import spatiotemporal as st

Y = np.array([[[10.0, 2e-17, 0.0, 20.0], [4.0, 5e-5, 8.0, 1.0]]])  # (B=1, H=2, N=4)
P = np.array([[[11.0, 5.0, 3.0, 18.0], [5.0, 1.0, 6.0, 1.5]]])
MASK = np.array([[[True, True, True, True], [True, True, True, False]]])


def test_mape_treats_targets_below_the_tolerance_as_zero():
    m = forecast_metrics(P, Y, MASK, mape_floor=1e-4)
    # step 0: MAE over all four (1 + 5 + 3 + 2) / 4; MAPE over 10 and 20 only: (10 % + 10 %) / 2
    # step 1: the masked node left out; MAE (1 + (1 - 5e-5) + 2) / 3; MAPE over 4 and 8:
    # (25 % + 25 %) / 2 (5e-5 < 1e-4 is a zero)
    assert m.mae_per_step == pytest.approx((2.75, (4 - 5e-5) / 3))
    assert m.rmse_per_step[0] == pytest.approx(math.sqrt((1 + 25 + 9 + 4) / 4))
    assert m.mape_per_step == pytest.approx((10.0, 25.0))
    assert m.mape == pytest.approx(17.5) and m.mae == pytest.approx((2.75 + (4 - 5e-5) / 3) / 2)
    z = forecast_metrics(P, Y, MASK, zeros_as_missing=True, mape_floor=1e-4)
    # zeros missing: the tolerance's zeros leave MAE too: step 0 over 10, 20; step 1 over 4, 8
    assert z.mae_per_step == pytest.approx((1.5, 1.5)) and z.n_valid == 4
    assert z.mape == pytest.approx(17.5)


def test_without_the_tolerance_a_rounding_zero_blows_mape_up():
    exact = forecast_metrics(P, Y, MASK, mape_floor=0.0)
    # the 2e-17 target now counts: (10 % + 100 * (5 - 2e-17) / 2e-17 + 10 %) / 3 > 1e18 %
    assert exact.mape_per_step[0] == pytest.approx((10 + 100 * 5 / 2e-17 + 10) / 3)
    finer = forecast_metrics(P, Y, MASK, mape_floor=1e-5)  # 5e-5 counts, 2e-17 does not
    assert finer.mape_per_step[1] == pytest.approx(100 * (0.25 + (1 - 5e-5) / 5e-5 + 0.25) / 3)


def test_the_report_carries_the_tolerance_to_both_conventions():
    report = forecast_metrics_report(P, Y, MASK, mape_floor=1e-4)
    assert report["observed"]["mape"] == pytest.approx(17.5)
    assert report["zeros_as_missing"]["mae"] == pytest.approx(1.5)
    assert report["conventions_differ"]
    with pytest.raises(ConfigError, match="mape_floor=-1"):
        forecast_metrics_report(P, Y, MASK, mape_floor=-1)


def test_every_data_set_states_its_tolerance_and_unit():
    for name in (*st.DATASET_NAMES, "custom"):
        assert st.UNITS[name], name
    for name, protocol in st.PROTOCOLS.items():
        assert protocol.mape_tolerance == 1e-4, name
    assert st.QUICK_PROTOCOL.mape_tolerance == 1e-4
