"""Spatio-temporal loaders, the forecasting protocol and the masked metrics."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import shared_data_or_skip

from eads._errors import ConfigError, DataError
from eads.data import spatiotemporal as st


@functools.cache
def _load(name: str) -> st.SpatioTemporalDataset:
    return st.load_spatiotemporal(name)


def _toy(values: np.ndarray, mask: np.ndarray | None = None, name: str = "toy"):
    values = np.asarray(values, np.float32)
    mask = np.ones(values.shape, bool) if mask is None else mask
    n = values.shape[1]
    return st.SpatioTemporalDataset(
        name=name,
        values=np.where(mask, values, 0.0).astype(np.float32),
        mask=mask,
        adjacency=np.zeros((n, n), np.float32),
        step="1 h",
        steps_per_day=24.0,
        target_feature=0,
        feature_names=tuple(f"f{i}" for i in range(values.shape[2])),
        graph_notes="none",
    )


# ------------------------------------------------------------------ real data


REAL_SHAPES = {
    "sz_taxi": (2976, 156, 1),
    "nyc_taxi": (17544, 69, 2),
    "nyc_taxi_2019": (8760, 69, 2),
    "beijing_pm25": (35064, 12, 1),
    "beijing_pm10": (35064, 12, 1),
    "texas_covid": (627, 254, 1),
}


@pytest.mark.parametrize("name", sorted(REAL_SHAPES))
def test_real_dataset_loads_with_documented_shape(name):
    shared_data_or_skip()
    ds = _load(name)
    t, n, f = REAL_SHAPES[name]
    assert ds.values.shape == ds.mask.shape == (t, n, f)
    assert ds.values.dtype == np.float32 and ds.mask.dtype == bool
    assert ds.adjacency.shape == (n, n) and ds.adjacency.dtype == np.float32
    assert np.all(np.diag(ds.adjacency) == 0) and (ds.adjacency >= 0).all()
    assert (ds.adjacency > 0).any()
    assert np.isfinite(ds.values).all()
    assert (ds.values[~ds.mask] == 0).all()
    assert ds.graph_notes and ds.step
    assert ds.mask[..., ds.target_feature].any(axis=0).all()


def test_beijing_missing_values_are_masked_not_filled():
    shared_data_or_skip()
    ds = _load("beijing_pm25")
    assert 0 < (~ds.mask).sum() < 0.05 * ds.mask.size  # a few hundred per station
    assert ds.node_names[0] == "Aotizhongxin" and len(ds.node_names) == 12
    # correlation graph: symmetric, dense, weights in (0, 1]
    assert np.allclose(ds.adjacency, ds.adjacency.T)
    off = ds.adjacency[~np.eye(12, dtype=bool)]
    assert (off > 0).all() and (off <= 1).all()


def test_texas_daily_cases_are_clipped_first_differences():
    shared_data_or_skip()
    ds = _load("texas_covid")
    assert (ds.values >= 0).all()
    assert ds.node_names[0] == "Anderson" and "Total" not in ds.node_names
    assert np.allclose(ds.adjacency, ds.adjacency.T)
    assert ((ds.adjacency > 0).sum(axis=1) >= 8).all()  # kNN, symmetrised


# ------------------------------------------------------------------ PEMS (generated arrays)


@pytest.mark.parametrize("name", ["pems04", "pems08"])
def test_pems_loader_on_generated_array_with_real_graph(name, tmp_path):
    shared_data_or_skip()
    shape = {"pems04": (16992, 307, 3), "pems08": (17856, 170, 3)}[name]
    rng = np.random.default_rng(0)
    data = rng.random(shape, dtype=np.float32).astype(np.float64) * 100  # the release is float64
    path = tmp_path / f"{name}.npz"
    np.savez(path, data=data)
    ds = st.load_spatiotemporal(name, path)
    assert ds.values.shape == shape and ds.target_feature == 0
    assert ds.feature_names[0] == "flow"
    np.testing.assert_allclose(ds.values[:50, :, 0], data[:50, :, 0], rtol=1e-6)
    edges = np.loadtxt(ds.sources[1], delimiter=",", skiprows=1)
    i, j = edges[:, 0].astype(int), edges[:, 1].astype(int)
    assert np.allclose(ds.adjacency, ds.adjacency.T)
    assert (ds.adjacency[i, j] > 0).mean() > 0.5  # most listed roads survive the threshold
    off_graph = np.ones(ds.adjacency.shape, bool)
    off_graph[i, j] = off_graph[j, i] = False
    assert (ds.adjacency[off_graph] == 0).all()  # no edge that the file does not list
    assert ((ds.adjacency >= 0.1) | (ds.adjacency == 0)).all()


def test_pems_without_path_says_to_pass_the_npz():
    with pytest.raises(DataError, match=r"pems04\.npz"):
        st.load_spatiotemporal("pems04")


def test_pems_graph_naming_more_sensors_than_the_data(tmp_path):
    path = tmp_path / "pems08.npz"
    np.savez(path, data=np.zeros((17856, 170, 3)))
    bad_graph = tmp_path / "distance.csv"
    bad_graph.write_text("from,to,cost\n0,1,10.0\n1,200,5.0\n")
    with pytest.raises(DataError, match=r"distance\.csv.*170 nodes"):
        st.load_pems("pems08", path, distance_path=bad_graph)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError, match="sz_taxi"):
        st.load_spatiotemporal("pems03")


# ------------------------------------------------------------------ bad input


def _sz_files(tmp_path, data, *, key="data", adj=None):
    npz = tmp_path / "speed.npz"
    np.savez(npz, **{key: data})
    adj_path = tmp_path / "adj.csv"
    adj = np.eye(156, k=1) if adj is None else adj
    np.savetxt(adj_path, adj, delimiter=",", fmt="%g")
    return npz, adj_path


def test_sz_taxi_loads_from_given_files_and_masks_nan(tmp_path):
    data = np.ones((40, 156, 1))
    data[3, 5, 0] = np.nan
    npz, adj = _sz_files(tmp_path, data)
    ds = st.load_sz_taxi(npz, adjacency_path=adj)
    assert not ds.mask[3, 5, 0] and ds.values[3, 5, 0] == 0.0
    assert ds.mask.sum() == ds.mask.size - 1


def test_wrong_key_names_the_file(tmp_path):
    npz, adj = _sz_files(tmp_path, np.ones((40, 156, 1)), key="speed")
    with pytest.raises(DataError, match=r"speed\.npz.*'data'"):
        st.load_sz_taxi(npz, adjacency_path=adj)


@pytest.mark.parametrize("shape", [(40, 156), (40, 155, 1), (40, 156, 2)])
def test_wrong_shape_names_the_file(tmp_path, shape):
    npz, adj = _sz_files(tmp_path, np.ones(shape))
    with pytest.raises(DataError, match=r"speed\.npz.*shape"):
        st.load_sz_taxi(npz, adjacency_path=adj)


def test_pems_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "pems04.npz"
    np.savez(path, data=np.zeros((100, 307, 3)))
    with pytest.raises(DataError, match=r"pems04\.npz.*\(16992, 307, 3\)"):
        st.load_pems("pems04", path)


def test_graph_node_count_mismatch_names_both_files(tmp_path):
    npz, adj = _sz_files(tmp_path, np.ones((40, 156, 1)), adj=np.eye(155))
    with pytest.raises(DataError, match=r"adj\.csv.*\(155, 155\).*speed\.npz.*156 nodes"):
        st.load_sz_taxi(npz, adjacency_path=adj)


def test_all_missing_series_names_the_file_and_node(tmp_path):
    data = np.ones((40, 156, 1))
    data[:, 7, 0] = np.nan
    npz, adj = _sz_files(tmp_path, data)
    with pytest.raises(DataError, match=r"speed\.npz.*entirely missing.*\[7\]"):
        st.load_sz_taxi(npz, adjacency_path=adj)


def test_infinite_values_are_rejected(tmp_path):
    data = np.ones((40, 156, 1))
    data[0, 0, 0] = np.inf
    npz, adj = _sz_files(tmp_path, data)
    with pytest.raises(DataError, match=r"speed\.npz.*infinite"):
        st.load_sz_taxi(npz, adjacency_path=adj)


def test_nyc_taxi_years_are_the_two_halves_of_the_release():
    shared_data_or_skip()
    full = _load("nyc_taxi")
    y2019, y2020 = (st.load_nyc_taxi(year=y) for y in (2019, 2020))
    assert y2019.name == "nyc_taxi_2019" and _load("nyc_taxi_2019").name == "nyc_taxi_2019"
    # 2019 has 365 days, 2020 is a leap year: the two years tile the file, in order
    assert (len(y2019.values), len(y2020.values)) == (365 * 24, 366 * 24)
    np.testing.assert_array_equal(np.concatenate([y2019.values, y2020.values]), full.values)
    np.testing.assert_array_equal(y2019.adjacency, full.adjacency)

    # the reason for the 2019 variant: no pandemic drop between its splits (the full file's
    # training split averages about 14x its validation split)
    def split_means(ds):
        ranges = st.chronological_split(ds.n_steps)
        return [ds.values[slice(*ranges[k]), :, 0].mean() for k in ("train", "val")]

    train, val = split_means(full)
    assert train > 10 * val
    train, val = split_means(y2019)
    assert 0.8 < val / train < 1.2


def test_nyc_taxi_unknown_year_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"year 2018.*\[2019, 2020\]"):
        st.load_nyc_taxi(tmp_path / "any.npz", year=2018)
    short = tmp_path / "short.npz"
    np.savez(short, arr_0=np.ones((100, 69, 2)))
    adj = tmp_path / "adj.csv"
    np.savetxt(adj, np.ones((69, 69)), delimiter=",", header=",".join(["z"] * 69))
    with pytest.raises(DataError, match=r"short\.npz.*100 hours.*2019"):
        st.load_nyc_taxi(short, adjacency_path=adj, year=2019)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npz"):
        st.load_nyc_taxi(tmp_path / "nope.npz", adjacency_path=tmp_path / "a.csv")


# ------------------------------------------------------------------ protocol


def test_split_is_chronological_and_covers_the_series():
    r = st.chronological_split(1000)
    assert r == {"train": (0, 600), "val": (600, 800), "test": (800, 1000)}
    r = st.chronological_split(100, (0.7, 0.1, 0.2))
    assert r == {"train": (0, 70), "val": (70, 80), "test": (80, 100)}
    with pytest.raises(ConfigError, match="sum to 1"):
        st.chronological_split(100, (0.5, 0.2, 0.2))


def test_windows_are_chronological_and_do_not_cross_splits():
    t, n = 200, 3
    values = np.broadcast_to(np.arange(t, dtype=np.float32)[:, None, None], (t, n, 1)).copy()
    values += np.arange(n, dtype=np.float32)[None, :, None] * 1000  # node offset
    splits = st.make_forecast_splits(_toy(values), history=5, horizon=3)
    sc = splits.scaler
    steps_used = {}
    for name, w in splits.splits().items():
        a, b = splits.ranges[name]
        assert len(w) == (b - a) - 5 - 3 + 1
        np.testing.assert_array_equal(w.start, np.arange(a, a + len(w)))
        # inputs: steps start..start+4, z-scored; targets: steps start+5..start+7 in data units
        x_data = sc.inverse(w.x)[..., 0]  # (B, 5, N)
        expect_x = w.start[:, None, None] + np.arange(5)[None, :, None] + 1000 * np.arange(n)
        np.testing.assert_allclose(x_data, expect_x, rtol=1e-5, atol=1e-2)
        expect_y = w.start[:, None, None] + 5 + np.arange(3)[None, :, None] + 1000 * np.arange(n)
        np.testing.assert_array_equal(w.y, expect_y)
        steps_used[name] = (w.start.min(), w.start.max() + 5 + 3 - 1)
        assert a <= steps_used[name][0] and steps_used[name][1] < b
    assert steps_used["train"][1] < steps_used["val"][0]
    assert steps_used["val"][1] < steps_used["test"][0]


def test_zscore_uses_observed_training_entries_only():
    rng = np.random.default_rng(1)
    t, n = 100, 4
    values = rng.normal(10.0, 2.0, (t, n, 1)).astype(np.float32)
    values[60:] += 1000.0  # val/test far away: must not leak into the statistics
    mask = np.ones(values.shape, bool)
    mask[::7, 1, 0] = False
    ds = _toy(values, mask)
    splits = st.make_forecast_splits(ds, history=4, horizon=2)
    train_v = values[:60][mask[:60]]
    np.testing.assert_allclose(splits.scaler.mean[0, 0], train_v.mean(), rtol=1e-5)
    np.testing.assert_allclose(splits.scaler.std[0, 0], train_v.std(), rtol=1e-4)
    # the masked (zeroed) entries did not pull the mean towards 0
    assert splits.scaler.mean[0, 0] > 9.0
    # missing inputs sit at the training mean (z = 0); missing targets are flagged, not filled
    assert splits.train.x[0, 0, 1, 0] == 0.0  # step 0 of node 1 is missing
    assert not splits.train.y_mask[3, 0, 1]  # step 7 = window 3, horizon step 0, node 1
    assert splits.train.y_mask[2, 0, 1]
    per_node = st.make_forecast_splits(ds, history=4, horizon=2, per_node_scaling=True)
    for j in range(n):
        obs = values[:60, j, 0][mask[:60, j, 0]]
        np.testing.assert_allclose(per_node.scaler.mean[j, 0], obs.mean(), rtol=1e-5)


def test_time_of_day_feature_and_protocol_defaults():
    ds = _toy(np.ones((100, 2, 1)))
    splits = st.make_forecast_splits(ds, history=4, horizon=2, time_of_day=True)
    assert splits.train.x.shape[-1] == 2 and splits.feature_names[-1] == "time_of_day"
    np.testing.assert_allclose(splits.train.x[1, :, 0, 1], (1 + np.arange(4)) / 24)
    assert st.PROTOCOLS["texas_covid"].history == 14 and st.PROTOCOLS["texas_covid"].horizon == 7
    assert st.PROTOCOLS["sz_taxi"].history == 12 and st.PROTOCOLS["sz_taxi"].horizon == 12


def test_too_short_split_is_a_clear_error():
    with pytest.raises(ConfigError, match="val split"):
        st.make_forecast_splits(_toy(np.ones((40, 2, 1))), history=6, horizon=6)


# ------------------------------------------------------------------ metrics


def test_masked_metrics_against_hand_computation():
    y = np.array([[[1.0, 2.0], [0.0, 4.0]]])  # (B=1, H=2, N=2)
    p = np.array([[[2.0, 2.0], [1.0, 1.0]]])
    mask = np.array([[[True, True], [True, False]]])
    m = st.forecast_metrics(p, y, mask)
    # step 0: errors 1, 0 -> MAE 0.5, RMSE sqrt(0.5), MAPE mean(1/1, 0/2) = 50 %
    # step 1: only the entry with target 0 counts -> MAE 1, RMSE 1, MAPE undefined (NaN)
    assert m.mae_per_step == pytest.approx((0.5, 1.0))
    assert m.rmse_per_step == pytest.approx((np.sqrt(0.5), 1.0))
    assert m.mape_per_step[0] == pytest.approx(50.0) and np.isnan(m.mape_per_step[1])
    assert m.mae == pytest.approx(0.75) and m.rmse == pytest.approx((np.sqrt(0.5) + 1) / 2)
    assert m.mape == pytest.approx(50.0) and m.n_valid == 3
    z = st.forecast_metrics(p, y, mask, zeros_as_missing=True)
    assert np.isnan(z.mae_per_step[1]) and z.mae == pytest.approx(0.5) and z.n_valid == 2
    report = st.forecast_metrics_report(p, y, mask)
    assert report["conventions_differ"]
    assert report["observed"]["mae"] == pytest.approx(0.75)
    assert report["zeros_as_missing"]["mae"] == pytest.approx(0.5)


def test_metrics_without_mask_and_shape_check():
    rng = np.random.default_rng(2)
    y = rng.uniform(1, 2, (5, 3, 4))
    p = y + 0.5
    m = st.forecast_metrics(p, y)
    assert m.mae == pytest.approx(0.5) and m.rmse == pytest.approx(0.5)
    assert m.mape == pytest.approx(np.mean([(50 / y[:, h]).mean() for h in range(3)]))
    with pytest.raises(ConfigError, match="shape"):
        st.forecast_metrics(p[:, :2], y)


def test_masked_mae_loss_ignores_masked_entries():
    torch = pytest.importorskip("torch")
    p = torch.tensor([1.0, 5.0, 3.0], requires_grad=True)
    y = torch.tensor([0.0, 0.0, 1.0])
    loss = st.masked_mae_loss(p, y, torch.tensor([True, False, True]))
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert p.grad[1] == 0


# ------------------------------------------------------------------ bad input writes nothing


def _files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working folder and cache folder: a failed call must leave both as they were."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EADS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _raises_and_writes_nothing(root, exc, match, fn, *args, **kwargs):
    before = _files(root)
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message, message  # one sentence
    assert _files(root) == before, "a failed call wrote files"


@pytest.mark.parametrize(
    ("cost", "match"),
    [("-5.0", r"distance\.csv.*1 NaN, negative.*row 2: -5\.0"), ("nan", r"distance\.csv.*NaN")],
)
def test_pems_negative_or_nan_distance_is_rejected(sandbox, cost, match):
    path = sandbox / "pems08.npz"
    np.savez(path, data=np.zeros((17856, 170, 3), np.float32))
    graph = sandbox / "distance.csv"
    graph.write_text(f"from,to,cost\n0,1,10.0\n1,2,{cost}\n")
    _raises_and_writes_nothing(
        sandbox, DataError, match, st.load_pems, "pems08", path, distance_path=graph
    )


@pytest.mark.parametrize(
    ("distance", "match"),
    [
        (np.array([[0.0, np.nan], [1.0, 0.0]]), "1 NaN or negative"),
        (np.array([[0.0, -1.0], [-1.0, 0.0]]), "2 NaN or negative"),
        (np.zeros((2, 3)), r"shape \(2, 3\).*square"),
    ],
)
def test_gaussian_kernel_rejects_nan_negative_and_non_square_distances(distance, match):
    with pytest.raises(DataError, match=match):
        st.gaussian_kernel_adjacency(distance)
    # inf means "no edge" and stays allowed: the oracle is the closed form exp(-(d/sigma)^2)
    w = st.gaussian_kernel_adjacency(np.array([[0.0, 1.0], [np.inf, 0.0]]), sigma=2.0)
    np.testing.assert_allclose(w, [[0.0, np.exp(-0.25)], [0.0, 0.0]])
    with pytest.raises(ConfigError, match="sigma=0"):
        st.gaussian_kernel_adjacency(np.zeros((2, 2)), sigma=0)


def test_dataset_of_wrong_rank_or_graph_size_is_rejected(sandbox):
    good = _toy(np.ones((30, 4, 1)))
    fields = {k: getattr(good, k) for k in good.__dataclass_fields__}
    cases = [
        (dict(values=np.ones((30, 4)), mask=np.ones((30, 4), bool)), r"\(30, 4\) \(rank 2\)"),
        (dict(mask=np.ones((30, 4, 2), bool)), r"mask shape \(30, 4, 2\)"),
        (dict(adjacency=np.zeros((5, 5))), r"adjacency has shape \(5, 5\).*4 nodes"),
        (dict(target_feature=1), "target_feature=1"),
    ]
    for change, match in cases:
        _raises_and_writes_nothing(
            sandbox, DataError, match, st.SpatioTemporalDataset, **(fields | change)
        )


def test_windows_longer_than_the_series_are_rejected(sandbox):
    ds = _toy(np.ones((30, 4, 1)))
    _raises_and_writes_nothing(
        sandbox,
        ConfigError,
        r"history \+ horizon = 31 steps is longer than the 30 steps",
        st.make_forecast_splits,
        ds,
        history=20,
        horizon=11,
    )
    _raises_and_writes_nothing(
        sandbox, ConfigError, "too short", st.sliding_windows, ds.values, ds.mask, 25, 6, 0
    )
    _raises_and_writes_nothing(
        sandbox,
        ConfigError,
        r"values \(30, 4\) and mask",
        st.sliding_windows,
        ds.values[..., 0],
        ds.mask[..., 0],
        2,
        2,
        0,
    )


def test_bad_files_and_unknown_names_write_nothing(sandbox):
    _raises_and_writes_nothing(sandbox, ConfigError, "sz_taxi", st.load_spatiotemporal, "pems03")
    _raises_and_writes_nothing(sandbox, ConfigError, "pems08", st.load_pems, "pems07")
    npz, adj = _sz_files(sandbox, np.ones((40, 156)))  # rank 2
    _raises_and_writes_nothing(
        sandbox, DataError, r"speed\.npz.*shape", st.load_sz_taxi, npz, adjacency_path=adj
    )
    npz, adj = _sz_files(sandbox, np.ones((40, 156, 1)), adj=np.eye(155))
    _raises_and_writes_nothing(
        sandbox, DataError, r"adj\.csv.*\(155, 155\)", st.load_sz_taxi, npz, adjacency_path=adj
    )
