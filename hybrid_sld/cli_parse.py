"""The ``hybrid-sld`` argument parser: every command's flags, their defaults and help. It names
no handler (cli.COMMANDS does), so that the commands may read the defaults (to tell which
flags were given) without importing the module that dispatches to them."""

from __future__ import annotations

import argparse
import functools
from types import MappingProxyType

from .search.config import PROPOSERS, SearchConfig
from .search.select import RULES


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hybrid-sld")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _llm_flags(g, hybrid: bool = True) -> None:
    """The LLM flags of `discover` (and of `bench`, whose llm cells have no hybrid share)."""
    g.add_argument("--model", default="gpt-4o-mini", help="model name (default gpt-4o-mini)")
    g.add_argument("--base-url", help="endpoint, e.g. http://localhost:8000/v1 (vLLM) or "
                   "http://localhost:11434/v1 (Ollama); default: OpenAI")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the key (default OPENAI_API_KEY)")
    g.add_argument("--llm-mode", choices=("coevolve", "expression", "best-of-n"),
                   default="coevolve", help="law + fitter (default), law only (ablation), or "
                   "independent samples without archive feedback (baseline)")
    if hybrid:
        g.add_argument("--llm-ratio", type=float, help="hybrid: the largest share of evaluations "
                       "the LLM may propose (default 0.5); the grammar proposes the rest while "
                       "the LLM's calls run")
    g.add_argument("--max-calls", type=int, help="LLM call budget (default 100)")
    g.add_argument("--max-tokens", type=int, help="LLM token budget, prompt + completion")
    g.add_argument("--max-usd", type=float, help="LLM spending budget in USD")
    g.add_argument("--call-tokens", type=int, help="completion tokens allowed per LLM reply "
                   "(default 2048; reasoning models may need more)")
    g.add_argument("--price", help="PROMPT,COMPLETION USD per million tokens (overrides the table)")
    g.add_argument("--concurrency", type=int, help="LLM calls at once (default 4)")
    g.add_argument("--llm-timeout", type=float, help="seconds per LLM call (default 60)")
    if hybrid:  # a recording is of one run: a bench's cells each need their own
        g.add_argument("--replay", help="serve LLM responses from this llm.jsonl (no network), "
                       "with the recorded run's --task, --batch-size, --proposer, LLM settings, "
                       "--max-evals, --budget, --seed and other search flags (all but "
                       "--workers)")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but for a command line holding --json: its errors (--max-evals abc,
    an unknown flag) also print {"error": message} on stdout, as every other refusal does, so
    a script reading stdout gets one JSON document (it got nothing)."""

    json_errors = False

    def error(self, message):
        if _Parser.json_errors:
            import json
            print(json.dumps({"error": f"{self.prog}: {message}"}))
        super().error(message)


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser; ``argv``, the command line it will read, if its errors should know --json."""
    import sys
    _Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    p = _Parser(prog="hybrid-sld", description="Scaling-law discovery toolkit.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, data=True):
        sp.add_argument("--json", action="store_true", help="print one JSON document to stdout")
        if data:
            sp.add_argument("--data-dir", help="folder with <task>/{train,test}.csv "
                            "(default: $HYBRID_SLD_DATA, then the Hugging Face dataset)")

    sp = sub.add_parser("tasks", help="list the built-in tasks")
    common(sp, data=False)

    sp = sub.add_parser("fit", help="fit a law per group; report train / valid / test R2")
    sp.add_argument("--task", required=True, help="task name or path to a task .toml")
    sp.add_argument("--law", help="law text (one 'target = expression' line per target)")
    sp.add_argument("--law-file", help="file holding the law text (-: standard input)")
    sp.add_argument("--fitter", help='FitterSpec as JSON or key=value pairs, e.g. '
                    '"strategy=de,n_starts=12"')
    sp.add_argument("--latex", help="write the law and fitted constants as LaTeX to this file")
    sp.add_argument("--plot", help="write a PNG of data, fitted law and extrapolation per group")
    common(sp)

    sp = sub.add_parser("discover", help="search for a law (grammar-guided evolution, optionally with an LLM)")
    sp.add_argument("--task", help="task name or task .toml (default kaplan_demo, the "
                    "built-in demo)")
    sp.add_argument("--budget", help="wall-clock budget: 90s, 10m, 1h (default, with neither "
                    "this nor --max-evals: 600 evaluations, at most 5m)")
    sp.add_argument("--max-evals", type=int, help="stop after this many evaluations "
                    "(deterministic under --seed)")
    sp.add_argument("--seed", type=int, default=0,
                    help="random seed (default 0); with --max-evals the same seed gives the same "
                         "result")
    sp.add_argument("--islands", type=int, default=4,
                    help="separate populations, each a grid over complexity and parameter "
                         "count (default 4)")
    sp.add_argument("--migrate-every", type=int, default=SearchConfig.migrate_every, metavar="N",
                    help="evaluations between migrations of each island's best law to the next "
                         f"(default {SearchConfig.migrate_every})")
    sp.add_argument("--workers", type=int, default=1, help="evaluation processes (default 1)")
    sp.add_argument("--batch-size", type=int, default=8,
                    help="candidates per batch (default 8)")
    sp.add_argument("--candidate-timeout", default="60s", metavar="TIME",
                    help="a candidate whose fit takes longer (processor time) fails as timed "
                         "out: 10s, 2m (default 60s; 0: none)")
    sp.add_argument("--operon-seeds", metavar="BUDGET",
                    help="first run pyoperon on the fit part for this long (e.g. 30s) and seed "
                         "the search with its models (needs the operon extra)")
    sp.add_argument("--final-selection", choices=RULES, default=RULES[0],
                    help="simplest (default): the lowest complexity of the 8 best laws and "
                         "the expert law within 5 %% of the best validation NMSE; valid: the "
                         "best validation R2; horizon: re-rank the 10 best and the expert law on "
                         "a longer extrapolation within train")
    sp.add_argument("--resume", help="continue the run in this run directory")
    sp.add_argument("--out", default="runs",
                    help="parent folder of run directories (default runs)")
    sp.add_argument("--no-crossover", action="store_true", help="ablation: no crossover")
    sp.add_argument("--fix-spare-constants", action="store_true",
                    help="fix constants no data can pin down in every law proposed (to the "
                         "first of 0, 1, -1, 0.5, 2 within bounds where the Jacobian's rank "
                         "stays)")
    sp.add_argument("--units", action="store_true",
                    help="mutation and crossover may not add unit faults: sums of unlike units, "
                         "exp or tanh of a quantity with a unit, an exponent that has one (the "
                         "features' 'unit' fields)")
    sp.add_argument("--no-assembly", action="store_true",
                    help="ablation: laws of several targets do not take each target's best "
                         "equation from other laws")
    sp.add_argument("--no-fitter-evolution", action="store_true",
                    help="ablation: keep each law's fitter fixed")
    sp.add_argument("--random-search", action="store_true",
                    help="baseline: seed laws mutated at random, no selection (best-of-N, same budget)")
    g = sp.add_argument_group("LLM proposer (any OpenAI-compatible endpoint)")
    g.add_argument("--proposer", choices=PROPOSERS, default=PROPOSERS[0],
                   help="offline grammar operators (default), the LLM, or both at --llm-ratio")
    _llm_flags(g)
    common(sp)

    sp = sub.add_parser("expert", help="score the literature's expert law beside published R2")
    sp.add_argument("--task", required=True, help="task name, or 'all'")
    sp.add_argument("--fitter", help="override the task's expert fitter settings (JSON or "
                    "key=value pairs, as for fit)")
    common(sp)

    sp = sub.add_parser("bench", help="run a task x method x seed grid; leaderboard and plots")
    sp.add_argument("--tasks", default="all", help="'all' (the SLDBench tasks) or T,T,... ")
    sp.add_argument("--methods", default="expert,offline,random",
                    help="comma-separated: expert, offline, random, operon, pysr, llm")
    sp.add_argument("--seeds", default="0", help="comma-separated seeds from 0 up (default 0)")
    sp.add_argument("--budget", default="10m",
                    help="search time per cell: 90s, 10m, 1h (default 10m)")
    sp.add_argument("--max-evals", type=int, help="also cap evaluations per search cell: offline "
                    "and random cells are then deterministic; operon cells (and pysr cells cut "
                    "by the budget) stop at the wall clock and are not reproducible")
    sp.add_argument("--timeout", help="wall clock per cell before it is killed "
                    "(default 1.5 x budget + 2m)")
    sp.add_argument("--executor", choices=("local", "dask"), default="local",
                    help="local processes (default) or a Dask cluster (needs the dask extra)")
    sp.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    sp.add_argument("--workers", type=int, default=1, help="cells at once (local processes or "
                    "LocalCluster workers; default 1)")
    sp.add_argument("--out", required=True, help="bench directory (re-run to resume)")
    _llm_flags(sp.add_argument_group("the llm method (any OpenAI-compatible endpoint)"),
               hybrid=False)
    common(sp)

    sp = sub.add_parser("predict", help="a fitted law's predictions at new scales (a run's "
                        "law and constants, or fit --json's)")
    sp.add_argument("source", help="a discover run's directory (or its best.json), or a file "
                    "of `hybrid-sld fit --json` output")
    sp.add_argument("--at", nargs="+", action="extend", metavar="FEATURE=VALUE",
                    help="the point: each feature the law uses, e.g. num_params=1e10 "
                    "tokens=2e11; commas list values (num_params=1e9,1e10: every combination)")
    sp.add_argument("--rows", help="a CSV or Parquet file of points (the law's features; a "
                    "group column, if any, picks each row's group)")
    sp.add_argument("--group", nargs="+", action="extend",
                    help="only these groups (default: every group fitted)")
    sp.add_argument("--task", help="the task (a name or task file), where the source's own "
                    "cannot be found")
    common(sp)

    sp = sub.add_parser("report", help="re-render a bench's or a run's tables and plots")
    sp.add_argument("dir", help="bench directory (results.jsonl) or run directory (best.json)")
    sp.add_argument("--task", help="a run's task file, where it is now if it moved")
    common(sp)

    sp = sub.add_parser("eval-program", help="score an EvoSLD-style Python program")
    sp.add_argument("--task", required=True, help="task name or task .toml")
    sp.add_argument("file", help="Python file defining scaling_law_func and fit_scaling_law")
    sp.add_argument("--timeout", default="300s",
                    help="time for loading the program and for each group: 90s, 5m "
                         "(default 300s)")
    sp.add_argument("--memory-mb", type=int, default=4096, help="memory limit (default 4096)")
    common(sp)
    return p


def given_flags(argv: list[str]) -> frozenset[str]:
    """The options typed on the command line (by dest), whatever their values: a flag given at
    its default (`--resume RUN --final-selection simplest` of a run begun with valid) is given,
    which comparing values with the defaults cannot tell."""
    p = build_parser(argv)
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    for parser in [p, *(sp for a in subs for sp in a.choices.values())]:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
    return frozenset(vars(p.parse_args(argv))) - {"command"}


@functools.cache
def _discover_defaults() -> MappingProxyType:
    """Each discover flag's value when it is not given, to tell which flags were: built once,
    read-only as it is shared."""
    return MappingProxyType(vars(build_parser().parse_args(["discover"])))
