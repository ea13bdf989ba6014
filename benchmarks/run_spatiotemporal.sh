#!/usr/bin/env bash
# The converged spatio-temporal grid (docs/spatiotemporal.md), one data set x model per process.
#
#   benchmarks/run_spatiotemporal.sh cell DATASET MODEL   # the seeds of one data set x model
#   benchmarks/run_spatiotemporal.sh all                  # every data set x model, in turn
#   benchmarks/run_spatiotemporal.sh list                 # the grid: seeds done (ok/failed)
#   benchmarks/run_spatiotemporal.sh probe [DATASET ...]  # seconds per epoch, a few batches
#
# Every finished cell (data set x model x seed) is a file under $RUN_DIR/cells; a cell already
# there is skipped (`all` skips a data set x model whose seeds all finished without starting
# it, so its log gets no line), so a killed run resumes by running the same command again (the cell that
# was training continues from its last epoch's checkpoint in $RUN_DIR/partial/). The table ($RUN_DIR/results.md, results.json,
# table.txt, plots/) is rebuilt from every cell of $RUN_DIR after each invocation. Meant for the
# background, e.g.:
#
#   nohup benchmarks/run_spatiotemporal.sh all > /tmp/st-converged.log 2>&1 &
#
# One runner per $RUN_DIR at a time (two would both train a missing cell). Environment:
#   RUN_DIR   default benchmarks/results/spatiotemporal/converged
#   PYTHON    default .venv/bin/python
#   SEEDS     the seeds, comma-separated (default 0,1,2; one alone: e.g. SEEDS=1)
#   PEMS04, PEMS08   paths of pems04.npz / pems08.npz (key "data"); without one its data set is
#             skipped
#   DATASETS, MODELS comma-separated grid of `all` and `list` (default: all, cheapest first)
#   NICE      niceness of the training processes (default 10)
#   QUICK=1   the --quick smoke settings instead of the full ones (tests only)
#   PROBE_OUT where `probe` writes its JSON (default benchmarks/results/spatiotemporal/probe.json)
set -euo pipefail

cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-benchmarks/results/spatiotemporal/converged}
PYTHON=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0,1,2}
NICE=${NICE:-10}
QUICK=${QUICK:-0}
DATASETS=${DATASETS:-beijing_pm25,beijing_pm10,sz_taxi,texas_covid,nyc_taxi,nyc_taxi_2019,pems08,pems04}
MODELS=${MODELS:-historical_average,last_value,eads,npgl,mtgnn,graph_wavenet,ddgcrn,megacrn}
PROBE_OUT=${PROBE_OUT:-benchmarks/results/spatiotemporal/probe.json}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RUN_DIR SEEDS QUICK PEMS04="${PEMS04:-}" \
    PEMS08="${PEMS08:-}"

usage() {
    sed -n '2,7p' "$0" >&2
    exit 2
}

pems_missing() {  # true when $1 is a PEMS set whose flow array was not given
    case "$1" in
        pems04) [ -z "$PEMS04" ] ;;
        pems08) [ -z "$PEMS08" ] ;;
        *) return 1 ;;
    esac
}

run_cell() {
    local dataset=$1 model=$2
    if pems_missing "$dataset"; then
        echo "skip $dataset x $model: set ${dataset^^}=path/to/$dataset.npz to run it" >&2
        return 0
    fi
    mkdir -p "$RUN_DIR/logs"
    echo "$(date -Is) start $dataset x $model (seeds $SEEDS)"
    # SEEDS lists seeds; the CLI reads a lone number as a count, so one seed gets its comma
    local seeds=$SEEDS
    [[ $seeds == *,* ]] || seeds="$seeds,"
    local args=(bench spatiotemporal --run-dir "$RUN_DIR" --datasets "$dataset" --models "$model"
        --seeds "$seeds" --no-progress)
    if [ "$QUICK" = 1 ]; then args+=(--quick); fi
    if [ -n "$PEMS04" ]; then args+=(--pems04 "$PEMS04"); fi
    if [ -n "$PEMS08" ]; then args+=(--pems08 "$PEMS08"); fi
    nice -n "$NICE" "$PYTHON" -m eads.cli "${args[@]}" 2>&1 | tee -a "$RUN_DIR/logs/${dataset}_${model}.log"
    echo "$(date -Is) done  $dataset x $model"
}

list_grid() {
    "$PYTHON" - <<'PY'
import os
from pathlib import Path

from eads.bench.cells import load_results

run_dir = Path(os.environ["RUN_DIR"])
done = {}
if (run_dir / "cells").is_dir():
    for r in load_results(run_dir):
        key = (r["cell"]["dataset"], r["cell"]["model"])
        done.setdefault(key, []).append(f"s{r['cell']['seed']}:{r['status']}")
for d in os.environ["DATASETS"].split(","):
    for m in os.environ["MODELS"].split(","):
        print(f"{d:<13} {m:<19} {' '.join(sorted(done.get((d, m), []))) or '-'}")
PY
}

complete_pairs() {  # "dataset:model" of every pair of the grid whose seeds ($SEEDS) all finished ok
    local d m rest s ok
    list_grid | while read -r d m rest; do
        ok=1
        for s in ${SEEDS//,/ }; do
            [[ " $rest " == *" s$s:ok "* ]] || ok=0
        done
        if [ "$ok" = 1 ]; then printf "%s " "$d:$m"; fi
    done
}

probe() {
    mkdir -p "$(dirname "$PROBE_OUT")"
    "$PYTHON" - "$@" <<'PY'
import json
import os
import platform
import sys
import time
from pathlib import Path

from eads.tasks.spatiotemporal import TRAINED, probe_epoch_cost

datasets = sys.argv[1:] or ["beijing_pm25", "sz_taxi", "texas_covid", "nyc_taxi"]
out = Path(os.environ["PROBE_OUT"])
rows = json.loads(out.read_text())["rows"] if out.is_file() else []
for d in datasets:
    for m in TRAINED:
        t = time.perf_counter()
        row = probe_epoch_cost(d, m, batches=3)
        row.update(loadavg=os.getloadavg(), probe_wall_s=time.perf_counter() - t)
        rows = [r for r in rows if (r["dataset"], r["model"]) != (d, m)] + [row]
        print(f"{d:<13} {m:<14} {row['s_per_update']:8.3f} s/update "
              f"{row['updates_per_epoch']:5d} updates {row['s_per_epoch']:9.1f} s/epoch", flush=True)
        out.write_text(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(),
                                   "rows": rows}, indent=1, sort_keys=True) + "\n")
PY
}

[ $# -ge 1 ] || usage
export DATASETS MODELS PROBE_OUT
case "$1" in
    cell)
        [ $# -eq 3 ] || usage
        run_cell "$2" "$3"
        ;;
    all)
        IFS=, read -ra ds <<< "$DATASETS"
        IFS=, read -ra ms <<< "$MODELS"
        complete=" $(complete_pairs) "
        for d in "${ds[@]}"; do
            for m in "${ms[@]}"; do
                if [[ $complete == *" $d:$m "* ]]; then
                    echo "skip $d x $m: every seed ($SEEDS) has its cell"
                else
                    run_cell "$d" "$m"
                fi
            done
        done
        ;;
    list) list_grid ;;
    probe)
        shift
        probe "$@"
        ;;
    *) usage ;;
esac
