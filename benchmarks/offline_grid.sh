#!/usr/bin/env bash
# The full offline grid of issue 6: 8 SLDBench tasks x expert, offline, random, operon x seed 0,
# 10 minutes per search cell, 2 cells at a time. About 8 x 3 x 10 min / 2 = 2 h on 2 free cores.
# Needs pyoperon (".[operon]"). By default it writes the recorded results,
# benchmarks/results/offline_grid/{results.jsonl,leaderboard.md,leaderboard.tex,plots/,runs/}: in
# a checkout holding them, every cell is finished, so nothing runs and the tables and plots are
# re-rendered over the recorded ones. To reproduce the grid, give a new folder (a relative one
# is taken from the checkout's root):
#   bash benchmarks/offline_grid.sh --out /tmp/offline_grid
# Resumable: re-running the same command skips finished cells. Extra arguments go to
# `hybrid-sld bench` (a later --out wins). Data: HYBRID_SLD_DATA, else ../shared/data/sldbench
# beside the checkout if there is one, else the library's own lookup (README, "The SLDBench tasks").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${HYBRID_SLD_DATA:-}" ] && [ -d ../shared/data/sldbench ]; then
    export HYBRID_SLD_DATA="$(cd ../shared/data/sldbench && pwd)"
fi
exec hybrid-sld bench --tasks all --methods expert,offline,random,operon --seeds 0 \
    --budget 10m --workers 2 --out benchmarks/results/offline_grid "$@"
