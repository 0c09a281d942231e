#!/usr/bin/env bash
# The full offline grid of issue 6: 8 SLDBench tasks x expert, offline, random, operon x seed 0,
# 10 minutes per search cell, 2 cells at a time. About 8 x 3 x 10 min / 2 = 2 h on 2 free cores.
# Resumable: re-running the same command skips finished cells. Needs pyoperon (".[operon]").
# Writes benchmarks/results/offline_grid/{results.jsonl,leaderboard.md,leaderboard.tex,plots/,runs/}.
set -euo pipefail
cd "$(dirname "$0")/.."
export HYBRID_SLD_DATA="${HYBRID_SLD_DATA:-$(pwd)/../shared/data/sldbench}"
exec hybrid-sld bench --tasks all --methods expert,offline,random,operon --seeds 0 \
    --budget 10m --workers 2 --out benchmarks/results/offline_grid "$@"
