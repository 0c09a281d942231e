"""LLM proposer, locally: prompt sizes per task, calls per second, and a recorded demo replayed.

No network and no key: the LLM is the scripted OpenAI-compatible server the tests use
(``tests/openai_server.py``, a real HTTP server on 127.0.0.1) with a fixed latency per reply,
reached through the real ``openai`` client.

- Prompt size: characters of system + user message for every built-in task after a short
  offline search filled the archive (5 evaluations), in co-evolution mode; and in best-of-N mode
  (no archive). SLDAgent sends 16-30k characters per call; the target is <= 8k.
- Calls per second: 40 completions through ``LLMClient`` with 1 and 4 calls at once, 50 ms
  server latency: what concurrency buys when the endpoint, not the client, is the bottleneck.
- Demo: ``discover --task kaplan_demo --proposer llm`` with a 12-call budget, then the same run
  replayed from its llm.jsonl with the server stopped; the two must end with the same archive.
- Hybrid against a slow endpoint: ``--proposer hybrid`` and ``offline`` side by side, 30 s each
  on kaplan_demo, the server answering after 5 s: evaluations made, and how many the LLM gave.

Usage: python benchmarks/llm_local.py [--record benchmarks/results/llm_local.md]  (under 3 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openai_server import KAPLAN_LAWS, FakeOpenAI, responder_for  # noqa: E402

from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.llm.budget import Budget  # noqa: E402
from hybrid_sld.llm.client import LLMClient, LLMSettings  # noqa: E402
from hybrid_sld.llm.proposer import LLMProposer  # noqa: E402
from hybrid_sld.llm.record import Recorder  # noqa: E402
from hybrid_sld.search.config import SEARCH_FITTER, SearchConfig  # noqa: E402
from hybrid_sld.search.engine import Search  # noqa: E402
from hybrid_sld.search.run import discover  # noqa: E402
from hybrid_sld.tasks import builtin_task_names, get_task  # noqa: E402


def prompt_sizes(tmp: Path) -> list[dict]:
    rows = []
    for name in builtin_task_names():
        t0 = time.perf_counter()
        try:
            run_dir = tmp / f"prompt-{name}"
            run_dir.mkdir()
            search = Search(SearchConfig(task=name, max_evals=5, batch_size=5), run_dir)
            search.run()
        except HybridSLDError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        sizes = {}
        for mode in ("coevolve", "best-of-n"):
            st = LLMSettings(mode=mode)
            p = LLMProposer(search.task, search.train, None, st, SEARCH_FITTER.to_dict())
            msgs = p.messages(p.user_message(search.state.archive, []))
            sizes[mode] = sum(len(m["content"]) for m in msgs)
        rows.append({"task": name, "entries": len({e.key for e in search.state.archive.entries()}),
                     **sizes, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: {sizes} ({rows[-1]['seconds']} s)", file=sys.stderr)
    return rows


def calls_per_second(url: str, tmp: Path, n: int = 40) -> dict:
    task = get_task("kaplan_demo")
    out = {}
    for k in (1, 4):
        st = LLMSettings(base_url=url, max_calls=10_000, concurrency=k)
        client = LLMClient(st, Budget({}, max_calls=10_000), Recorder(tmp / f"cps{k}.jsonl"))
        p = LLMProposer(task, Search(SearchConfig(task="kaplan_demo", max_evals=1), tmp).train,
                        client, st, SEARCH_FITTER.to_dict())
        user = p.user_message(None, [])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(k) as pool:
            list(pool.map(lambda q: p.propose(user, q, 1), range(n)))
        out[k] = round(n / (time.perf_counter() - t0), 1)
    return out


def demo(server: FakeOpenAI, url: str, tmp: Path) -> dict:
    llm = {"base_url": url, "max_calls": 12, "concurrency": 4}
    cfg = dict(task="kaplan_demo", max_evals=60, batch_size=4, proposer="llm")
    t0 = time.perf_counter()
    live = discover(SearchConfig(**cfg, llm=llm), out=tmp / "demo")
    t_live = time.perf_counter() - t0
    server.stop()
    t0 = time.perf_counter()
    rec = str(Path(live["run_dir"]) / "llm.jsonl")
    rep = discover(SearchConfig(**cfg, llm=llm | {"replay": rec}), out=tmp / "replay")
    t_rep = time.perf_counter() - t0

    def archive(r):
        state = json.loads((Path(r["run_dir"]) / "checkpoint" / "state.json").read_text())
        return [[{k: v for k, v in e.items() if k != "seconds"} for e in isl]
                for isl in state["archive"]["islands"]]

    return {"live": live, "replay": rep, "t_live": t_live, "t_replay": t_rep,
            "same_archive": archive(live) == archive(rep), "same_law": live["law"] == rep["law"]}


def slow_endpoint(tmp: Path, latency: float = 5.0, budget: float = 30.0) -> list[dict]:
    """offline and hybrid for the same wall time, the endpoint answering after ``latency``."""
    server = FakeOpenAI(responder_for(KAPLAN_LAWS), latency=latency)
    url = server.start()
    rows = []
    try:
        for proposer in ("offline", "hybrid"):
            llm = {"base_url": url, "max_calls": 100} if proposer == "hybrid" else None
            t0 = time.perf_counter()
            r = discover(SearchConfig(task="kaplan_demo", budget_seconds=budget, seed=0,
                                      proposer=proposer, llm=llm), out=tmp / f"slow-{proposer}")
            events = [json.loads(line) for line in open(Path(r["run_dir"]) / "events.jsonl")]
            rows.append({"proposer": proposer, "evals": r["evals"],
                         "llm_evals": sum(e["origin"] == "llm" for e in events),
                         "calls": (r.get("llm") or {}).get("calls", 0),
                         "fit_seconds": round(sum(e["seconds"] for e in events), 1),
                         "wall": round(time.perf_counter() - t0, 1),
                         "valid_r2": r["valid_r2"], "test_r2": r["test_r2"]})
            print(f"slow endpoint, {proposer}: {rows[-1]}", file=sys.stderr)
    finally:
        server.stop()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", nargs="?", const=str(ROOT / "benchmarks/results/llm_local.md"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENAI_API_KEY", "sk-local-benchmark")
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        sizes = prompt_sizes(tmp)
        server = FakeOpenAI(responder_for(KAPLAN_LAWS), latency=0.05)
        url = server.start()
        cps = calls_per_second(url, tmp)
        d = demo(server, url, tmp)
        slow = slow_endpoint(tmp)
    total = time.perf_counter() - t_all
    table = "\n".join(f"| {r['task']} | {r['entries']} | {r['coevolve']} | {r['best-of-n']} |"
                      for r in sizes)
    lv, rp = d["live"], d["replay"]
    slow_table = "\n".join(
        f"| {r['proposer']} | {r['evals']} | {r['llm_evals']} | {r['calls']} | {r['fit_seconds']} "
        f"| {r['wall']} | {r['valid_r2']:.5f} | {r['test_r2']:.5f} |" for r in slow)
    md = f"""# LLM proposer, local figures

`python benchmarks/llm_local.py --record` on {platform.machine()} / Python {platform.python_version()},
{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; {total:.0f} s in all. The LLM is the scripted
local server of the tests (real HTTP on 127.0.0.1, real `openai` client), not a model.

## Prompt size (characters, system + user message)

After a 5-evaluation offline search filled the archive (co-evolution mode shows up to 5 archive
entries with residuals by scale; best-of-N shows none). Target <= 8,000; SLDAgent sends 16-30k.

| task | archive entries | co-evolution | best-of-N |
|---|---|---|---|
{table}

Largest: {max(r['coevolve'] for r in sizes)} characters.

## Calls per second (40 calls, server latency 50 ms)

| concurrency | calls / s |
|---|---|
| 1 | {cps[1]} |
| 4 | {cps[4]} |

## Demo run and replay (kaplan_demo, proposer llm, 12-call budget, concurrency 4)

| run | evaluations | LLM calls | tokens | validity | best valid R2 | test R2 | seconds |
|---|---|---|---|---|---|---|---|
| live | {lv['evals']} | {lv['llm']['calls']} | {lv['llm']['prompt_tokens'] + lv['llm']['completion_tokens']} | {lv['llm']['validity_rate']} | {lv['valid_r2']} | {lv['test_r2']} | {d['t_live']:.1f} |
| replay (server stopped) | {rp['evals']} | {rp['llm']['calls']} | {rp['llm']['prompt_tokens'] + rp['llm']['completion_tokens']} | {rp['llm']['validity_rate']} | {rp['valid_r2']} | {rp['test_r2']} | {d['t_replay']:.1f} |

Same archive: {d['same_archive']}; same best law: {d['same_law']}. Stop: {lv['stop_reason']}.
Improvements by proposer: {lv['improvements_by_proposer']}.

```
{lv['law']}
```

## Hybrid against a slow endpoint (kaplan_demo, 30 s each, replies after 5 s, seed 0)

The grammar proposer goes on while the LLM's calls (4 at once) wait for replies. Fit seconds:
the evaluations' own time, summed; what is left of the wall time went to the search's overhead,
the final report and, where the grammar waited for the LLM, waiting.

| proposer | evaluations | from the LLM | LLM calls | fit seconds | wall seconds | valid R2 | test R2 |
|---|---|---|---|---|---|---|---|
{slow_table}

Evaluations, hybrid / offline: {slow[1]['evals'] / slow[0]['evals']:.2f}.
"""
    print(md)
    if args.record:
        Path(args.record).write_text(md)
        print(f"written to {args.record}", file=sys.stderr)
    return 0 if d["same_archive"] and d["same_law"] else 1


if __name__ == "__main__":
    sys.exit(main())
