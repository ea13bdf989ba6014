#!/usr/bin/env bash
# The converged PDE table on the released-setting Burgers (docs/pde.md), resumable: finished
# cells are skipped and a killed cell continues from its per-epoch checkpoint in partial/.
#
#   benchmarks/run_pde_released.sh            # 1024, then 256, then 4096 points; every model, 3 seeds
#   RESOLUTIONS=1024 MODELS=npgl,eads benchmarks/run_pde_released.sh
#
# Environment: PYTHON (default .venv/bin/python), RUN_DIR (default
# benchmarks/results/pde/released), RESOLUTIONS, MODELS, SEEDS (default 3). One model per
# process, one torch thread; the data set is generated once (~25 min) into the cache.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUN_DIR=${RUN_DIR:-benchmarks/results/pde/released}
RESOLUTIONS=${RESOLUTIONS:-1024,256,4096}
MODELS=${MODELS:-nn,npgl,eads,eads_backprop,fcn,gno,fno}  # cheapest first
SEEDS=${SEEDS:-3}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

for res in ${RESOLUTIONS//,/ }; do
    for model in ${MODELS//,/ }; do
        echo "=== $(date -u +%FT%TZ) burgers_released res=$res model=$model"
        "$PYTHON" -c "import sys; from eads.cli import main; sys.exit(main())" bench pde \
            --run-dir "$RUN_DIR" --datasets burgers_released --resolutions "$res" \
            --models "$model" --seeds "$SEEDS"
    done
done
