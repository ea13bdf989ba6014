"""Bad input to any suite is one sentence naming the bad value, raised before a run directory
is written: unknown data set, resolution or model names, a resolution list that is not numbers,
a fine grid the resolutions do not divide, bad seeds, unknown settings. (A corrupt cell file is
tests/bench/test_bench_cells.py's.) Nothing is generated or trained; < 1 s."""

from __future__ import annotations

import pytest

from eads._errors import ConfigError
from eads.tasks import attention, pde, spatiotemporal
from eads.tasks.pde import PDEBenchmarkConfig

CASES = [
    (pde, {"datasets": "burgers,navier_stokes"}, "'navier_stokes'"),
    (pde, {"models": "eads,transformer"}, "'transformer'"),
    (pde, {"resolutions": "256,512"}, r"\[512\]"),
    (pde, {"resolutions": "256,abc"}, "'256,abc'"),
    (pde, {"seeds": 0}, "seeds=0"),
    (pde, {"seeds": [0, -1]}, r"seeds=\[0, -1\]"),
    (pde, {"datasets": "darcy", "data": PDEBenchmarkConfig(darcy_fine_intervals=96)}, "=96"),
    (pde, {"data": PDEBenchmarkConfig(burgers_solver="euler")}, "'euler'"),
    (pde, {"budgets": {"mlp": pde.FULL_BUDGETS["nn"]}}, "'mlp'"),
    (spatiotemporal, {"datasets": "beijing_pm25,mars_taxi"}, "'mars_taxi'"),
    (spatiotemporal, {"models": "eads,transformer"}, "'transformer'"),
    (spatiotemporal, {"seeds": ()}, "seeds=()"),
    (attention, {"models": "eads,gpt"}, "'gpt'"),
    (attention, {"n_evals": 3}, "'n_evals'"),
]


@pytest.mark.parametrize(
    ("suite", "kwargs", "names"), CASES, ids=[f"{s.__name__[11:]}-{k}" for s, k, _ in CASES]
)
def test_bad_input_is_one_sentence_before_anything_is_written(tmp_path, suite, kwargs, names):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=names) as info:
        suite.run_benchmark(run, progress=False, **kwargs)
    message = str(info.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    assert not run.exists()
