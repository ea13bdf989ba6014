#!/usr/bin/env bash
# Carry unfinished cells to the next machine through git. A cell's per-epoch checkpoints live in
# RUN_DIR/partial/<cell id>/ (git-ignored: they are working state, not results). When the next
# session may start on a fresh clone, a cell that has trained for hours would start again at
# epoch 0; staging its folder with this script (then committing) lets the clone resume it
# where it stopped, as on the same machine. Nothing else changes: the suite still removes the
# folder once the cell's result is written, and `git add -u RUN_DIR/partial` then records that
# removal in the commit of the finished cell.
#
#   benchmarks/carry_partial.sh RUN_DIR [RUN_DIR ...]   # list, then `git add -f`, each cell's folder
#   MIN_EPOCHS=20 benchmarks/carry_partial.sh ...        # only cells at least that far (default 10)
#   DRY_RUN=1 benchmarks/carry_partial.sh ...            # list only
#
# A checkpoint is a few MB (weights, optimizer state, best weights); carry only cells whose
# lost epochs would cost more than that is worth. Prints one line per cell: its last epoch line.
set -euo pipefail

cd "$(dirname "$0")/.."
MIN_EPOCHS=${MIN_EPOCHS:-10}
DRY_RUN=${DRY_RUN:-0}
[ $# -ge 1 ] || { sed -n '2,15p' "$0" >&2; exit 2; }

for run_dir in "$@"; do
    [ -d "$run_dir" ] || { echo "no run directory $run_dir" >&2; exit 2; }
    [ -d "$run_dir/partial" ] || continue
    for cell in "$run_dir"/partial/*/; do
        [ -d "$cell" ] || continue
        last=$(tail -qn 1 "$cell"*.log 2>/dev/null | tail -n 1)
        epoch=$(sed -n 's/^epoch \([0-9]*\)\/.*/\1/p' <<< "$last")
        if [ -z "$epoch" ] || [ "$epoch" -lt "$MIN_EPOCHS" ]; then
            echo "skip  ${cell%/} (${last:-no epoch yet})"
            continue
        fi
        echo "carry ${cell%/}: $last"
        [ "$DRY_RUN" = 1 ] || git add -f -- "$cell"
    done
done
