"""``discover``'s and ``bench``'s flags as SearchConfig and LLMSettings fields, and back: a
resumed run's flags taken anew, a replay's recorded settings as the flags that give them. Apart
from the command itself: the mapping both ways is one concept, and bench uses half of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_parse import _discover_defaults
from .errors import HybridSLDError
from .metrics import counted
from .search.config import SearchConfig
from .tasks import get_task

# discover flags a resumed LLM run takes anew -> their LLMSettings field
RESUMABLE_LLM = {"base_url": "base_url", "api_key_env": "api_key_env", "max_calls": "max_calls",
                 "max_tokens": "max_tokens", "max_usd": "max_usd", "llm_timeout": "timeout",
                 "call_tokens": "call_tokens", "price": "price"}


LLM_FLAGS = ("model", "base_url", "api_key_env", "llm_mode", "llm_ratio", "max_calls",
             "max_tokens", "max_usd", "price", "concurrency", "llm_timeout", "call_tokens")


def _search_flags(args) -> dict:
    """The SearchConfig fields the search flags set (SEARCH_FLAGS)."""
    from .search.run import parse_budget
    return dict(seed=args.seed, islands=args.islands, migrate_every=args.migrate_every,
                crossover=not args.no_crossover,
                p_assemble=0.0 if args.no_assembly else SearchConfig.p_assemble,
                evolve_fitter=not args.no_fitter_evolution, random_search=args.random_search,
                candidate_seconds=parse_budget(args.candidate_timeout, "--candidate-timeout",
                                               zero=True) or None,
                operon_seconds=(parse_budget(args.operon_seeds, "--operon-seeds")
                                if args.operon_seeds else 0.0),
                final_selection=args.final_selection,
                fix_spare_constants=args.fix_spare_constants, units=args.units)


# SearchConfig.search_settings fields -> the discover flag that sets them (p_crossover and
# p_fitter have none: a replay takes them as recorded, by name)
SEARCH_FLAGS = {"seed": "seed", "islands": "islands", "migrate_every": "migrate_every",
                "crossover": "no_crossover", "p_assemble": "no_assembly",
                "evolve_fitter": "no_fitter_evolution", "random_search": "random_search",
                "candidate_seconds": "candidate_timeout", "operon_seconds": "operon_seeds",
                "final_selection": "final_selection", "fix_spare_constants": "fix_spare_constants",
                "units": "units"}
# the settings a replay takes from the record (client.RECORDED, the run's bounds, proposer,
# batch size and search settings) -> their discover flag
REPLAYED_FLAGS = {"proposer": "proposer", "model": "model", "mode": "llm_mode",
                  "max_calls": "max_calls", "max_tokens": "max_tokens", "max_usd": "max_usd",
                  "price": "price", "call_tokens": "call_tokens", "concurrency": "concurrency",
                  "llm_ratio": "llm_ratio", "max_evals": "max_evals", "budget_seconds": "budget",
                  "batch_size": "batch_size", "task": "task", **SEARCH_FLAGS}


def _replay_task(args, recorded: dict | None) -> str | None:
    """The recorded run's task, for a replay with --task left out (None: an older record
    holds none); a --task of another name is refused, as the replay would not make the
    recorded calls. A task file that moved is given where it is now, as --resume takes it."""
    saved = (recorded or {}).get("task")
    if saved is None:
        return None
    gone = Path(saved).suffix == ".toml" and not Path(saved).is_file()
    if args.task is None:
        if gone:
            raise HybridSLDError(f"the replayed run's task file {saved} is gone; if it moved, "
                                 "give where it is now with --task")
        return saved
    if not gone and get_task(args.task).name != get_task(saved).name:
        raise HybridSLDError(f"a replay makes the recorded run's calls with its settings: "
                             f"leave out --task {args.task} (recorded: {saved})")
    return args.task


def _replayed(args, cfg: SearchConfig, recorded: dict | None) -> SearchConfig:
    """The replay's settings: the recorded run's LLM settings, bounds, batch size and search
    settings (--seed, --islands, ...: SEARCH_FLAGS) as it began (record.load_run; a run resumed
    with other budgets takes them where it was resumed, search.engine), for flags left out (the
    default --proposer, offline, too: a replay is of an llm or hybrid run); a flag given
    otherwise is refused, as the replay would not make the recorded calls. An older record
    holds none, or no proposer or search settings: the flags stand as given."""
    from dataclasses import replace
    from .llm.client import LLMSettings
    from .search.run import parse_budget
    if cfg.proposer == "offline" and "proposer" not in (recorded or {}):
        raise HybridSLDError("--replay serves recorded LLM replies: give --proposer llm or "
                             "hybrid with it")
    if recorded is None:
        return cfg
    defaults = _discover_defaults()
    mine = {**LLMSettings.from_dict(cfg.llm).to_dict(), "max_evals": cfg.max_evals,
            "budget_seconds": cfg.budget_seconds, "proposer": cfg.proposer,
            "batch_size": cfg.batch_size, **cfg.search_settings()}
    if args.budget is not None:
        mine["budget_seconds"] = parse_budget(args.budget, "--budget")
    # an older record holds no proposer, task, batch size or search settings
    older = {k: recorded[k] for k in ("proposer", "batch_size") if k in recorded}
    search = {k: v for k, v in recorded.get("search", {}).items() if k in mine}  # known here
    taken, refused = {}, []
    if args.task is None and "task" in recorded:  # taken by _replay_task
        taken["task"] = recorded["task"]
    for field, value in {**older, **recorded["llm"], "max_evals": recorded["max_evals"],
                         "budget_seconds": recorded["budget_seconds"], **search}.items():
        flag = REPLAYED_FLAGS.get(field)
        if flag is None or getattr(args, flag) == defaults[flag]:  # left out: the record's
            if mine[field] != value:
                taken[field] = value
        elif mine[field] != value:
            switch = getattr(args, flag) is True  # "--units (recorded: without --units)"
            given = _flag_name(field) + ("" if switch else f" {getattr(args, flag)}")
            was = _setting(field, value) if switch else _flag_value(field, value)
            refused.append(f"{given} (recorded: {was})")
    if refused:
        raise HybridSLDError(f"a replay makes the recorded run's calls with its settings: "
                             f"leave out {', '.join(refused)}")
    if taken:
        shown = [_setting(k, v) for k, v in taken.items()]
        print(f"note: the replay takes the recorded run's settings: {', '.join(shown)}",
              file=sys.stderr)
    _note_resumes(args.replay)
    taken.pop("task", None)  # cfg has it already (_replay_task)
    run = {k: taken.pop(k) for k in ("proposer", "max_evals", "budget_seconds", "batch_size",
                                     *search) if k in taken}
    return replace(cfg, llm={**cfg.llm, **taken}, **run)


def _note_resumes(path) -> None:
    """Say where the recorded run was resumed with other LLM settings: the replay takes
    them there (search.engine)."""
    from .llm.record import load_sessions
    sessions = load_sessions(path)
    for before, d in zip(sessions, sessions[1:]):
        shown = [_setting(k, v) for k, v in d["llm"].items()
                 if before["llm"].get(k) != v]
        if shown:
            print(f"note: the recorded run was resumed after {counted(d['evals'], 'evaluation')} with "
                  f"{', '.join(shown)}: the replay takes them there", file=sys.stderr)


def _flag_name(field: str) -> str:
    flag = REPLAYED_FLAGS.get(field)
    return f"--{flag.replace('_', '-')}" if flag else field  # repairs: an API setting


def _flag_value(field: str, v) -> str:
    if v is None:  # no limit: --candidate-timeout 0 gives it; --budget has no such value
        return "0" if field == "candidate_seconds" else "none"
    return f"{v:g}s" if field.endswith("_seconds") else (
        ",".join(map(str, v)) if isinstance(v, list) else str(v))


def _setting(field: str, v) -> str:
    """A recorded setting as the discover flag that gives it: "--seed 3", "--no-crossover"
    (a switch: "without --units" where it was off)."""
    flag = REPLAYED_FLAGS.get(field)
    if field in SEARCH_FLAGS:
        defaults = _discover_defaults()
        if defaults[flag] is False:  # a switch: what it sets, given or not
            on, off = (_search_flags(argparse.Namespace(**{**defaults, flag: given}))[field]
                       for given in (True, False))
            if v in (on, off):
                return ("" if v == on else "without ") + _flag_name(field)
            return f"{field} {v}"  # an API setting no flag gives (p_assemble 0.3)
    return f"{_flag_name(field)} {_flag_value(field, v)}"


def parse_price(text: str | None) -> list[float] | None:
    """--price PROMPT,COMPLETION (USD per million tokens) as two numbers, None if not given."""
    if not text:
        return None
    try:
        price = [float(x) for x in text.split(",")]
    except ValueError:
        price = []
    if len(price) != 2 or min(price) < 0:
        raise HybridSLDError(f"--price must be PROMPT,COMPLETION USD per million tokens, got {text!r}")
    return price


def _llm_settings(args) -> dict:
    """LLMSettings fields from the discover flags (checked by SearchConfig)."""
    price = parse_price(args.price)
    fields = {"model": args.model, "base_url": args.base_url, "api_key_env": args.api_key_env,
              "mode": args.llm_mode, "max_calls": args.max_calls, "max_tokens": args.max_tokens,
              "max_usd": args.max_usd, "price": price, "concurrency": args.concurrency,
              "call_tokens": args.call_tokens,
              "llm_ratio": getattr(args, "llm_ratio", None), "timeout": args.llm_timeout,
              "replay": str(Path(args.replay).resolve()) if getattr(args, "replay", None) else None}
    return {k: v for k, v in fields.items() if v is not None}
