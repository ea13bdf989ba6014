#!/usr/bin/env bash
# The attention-kernel experiment (docs/attention.md), resumable: each part skips its finished
# cells, so a killed run continues by running the same command again.
#
#   benchmarks/run_attention.sh full      # all 30 layers x EADS, NP-GL, mean output (1000 passages)
#   benchmarks/run_attention.sh window    # ablation: EADS with an 8-token window on 4 layers
#   benchmarks/run_attention.sh pairs     # check: EADS and NP-GL with 40,000 training pairs, 3 layers
#   benchmarks/run_attention.sh pairs80k  # the same with 80,000 pairs from 2000 training passages
#   benchmarks/run_attention.sh pairs160k # EADS alone with 160,000 pairs from 4000 passages
#   benchmarks/run_attention.sh pairsall  # EADS, layer 5, every token of all 4153 training passages
#   benchmarks/run_attention.sh full144k  # the full run again with 160,000 pairs (~34 CPU h)
#   benchmarks/run_attention.sh all       # the three, in that order
#   benchmarks/run_attention.sh report    # rebuild every part's tables and plots from its cells
#
# Environment: PYTHON (default .venv/bin/python), RESULTS (default benchmarks/results/attention).
# One torch thread per run; the window and pairs parts read the same 1000 evaluation passages
# (the same split seed), so their cells pair with the full run's passage by passage.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-benchmarks/results/attention}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

eads() { "$PYTHON" -c "import sys; from eads.cli import main; sys.exit(main())" "$@"; }

full() {
    eads bench attention --run-dir "$RESULTS/full" --layers all --models eads,npgl,mean
}
window() {
    eads bench attention --run-dir "$RESULTS/window8" --layers 0,10,20,29 --models eads --window 8
}
pairs() {
    eads bench attention --run-dir "$RESULTS/pairs40k" --layers 5,15,25 --models eads,npgl \
        --max-pairs 40000
}
pairs80k() {
    eads bench attention --run-dir "$RESULTS/pairs80k" --layers 5,15,25 --models eads,npgl \
        --n-train 2000 --max-pairs 80000
}
pairs160k() {  # 4000 of the 4153 passages left beside the 1000 evaluation passages
    eads bench attention --run-dir "$RESULTS/pairs160k" --layers 5,15,25 --models eads \
        --n-train 4000 --max-pairs 160000
}
pairsall() {  # every token of every passage outside the evaluation part (about 340,000)
    eads bench attention --run-dir "$RESULTS/pairsall" --layers 5 --models eads \
        --n-train 4153 --max-pairs 400000
}
full144k() {  # all 30 layers with the pairs160k sample, where EADS's R2 flattens (attention.md)
    eads bench attention --run-dir "$RESULTS/full144k" --layers all --models eads,npgl,mean \
        --n-train 4000 --max-pairs 160000
}
report() {
    for d in full window8 pairs40k pairs80k pairs160k pairsall full144k; do
        if [ -d "$RESULTS/$d/cells" ]; then
            eads bench attention-report "$RESULTS/$d" > /dev/null
            echo "$RESULTS/$d/results.md"
        fi
    done
}

case "${1:-}" in
    full) full ;;
    window) window ;;
    pairs) pairs ;;
    pairs80k) pairs80k ;;
    pairs160k) pairs160k ;;
    pairsall) pairsall ;;
    full144k) full144k ;;
    all) full; window; pairs ;;
    report) report ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
