"""What a search's checkpoints cost over a whole run, three ways: the cache serialised whole at
every batch (as until stop 63), each entry serialised once as it is added (``State.cache_json``)
at every batch (until stop 68), and that written only once the evaluations since the last
checkpoint make up ``engine.CHECKPOINT_SHARE`` of the total ("thinned", from stop 68).

A checkpoint holds every evaluation so far, so writing one after every batch writes data that
grows with the square of the run. This replays a finished run: its ``events.jsonl`` makes the
cache grow as the run's did, batch by batch (the run's batch size). After each batch each way
appends the batch's events to its own log, then (every batch, or when due for "thinned") syncs
the log and writes the checkpoint through ``write_atomic`` (a synced temporary file and a
rename), as the search does; the ways take turns going first. Reported: the seconds each way
summed over the run, the checkpoints written, the data written, and whether every checkpoint's
text was the same as the whole document's dump.

    python benchmarks/checkpoint_cost.py RUN_DIR [RUN_DIR ...] [--ways once thinned] [--record FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import emit, header  # noqa: E402

from hybrid_sld.search.archive import Archive  # noqa: E402
from hybrid_sld.search.engine import CHECKPOINT_SHARE  # noqa: E402
from hybrid_sld.search.state import State, checkpoint_text, write_atomic  # noqa: E402

WAYS = ("whole", "once", "thinned")


def replay(run_dir: Path, folder: Path, ways=WAYS) -> dict:
    """Seconds, checkpoints and megabytes of each way over the run's batches."""
    final = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    head = {k: final[k] for k in ("config", "archive")}
    rest = {k: v for k, v in final.items() if k not in ("config", "archive", "cache")}
    batch = int(final["config"]["batch_size"])
    states = {way: State(Archive(1)) for way in ways}
    seconds, count, mb = (dict.fromkeys(ways, 0) for _ in range(3))
    saved = dict.fromkeys(ways, 0)
    same, batches = True, 0
    with open(run_dir / "events.jsonl") as fh:
        lines = fh.readlines()
    for start in range(0, len(lines), batch):
        done = start + len(lines[start:start + batch])
        order = ways if batches % 2 == 0 else ways[::-1]
        for way in order:
            t0 = time.perf_counter()
            state = states[way]
            for line in lines[start:done]:
                d = json.loads(line)
                state.cache[d["key"]] = {k: v for k, v in d.items() if k != "kept"}
            with open(folder / f"{way}.jsonl", "a") as log:
                log.writelines(lines[start:done])
            due = (way != "thinned" or done - saved[way] >= CHECKPOINT_SHARE * done
                   or done == len(lines))
            if due:
                with open(folder / f"{way}.jsonl", "a") as log:
                    os.fsync(log.fileno())
                text = (json.dumps(head | {"cache": state.cache} | rest) if way == "whole"
                        else checkpoint_text(head, state, rest))
                write_atomic(folder / f"{way}.json", text)
            seconds[way] += time.perf_counter() - t0
            if due:  # untimed: the check is not part of a checkpoint
                saved[way] = done
                count[way] += 1
                mb[way] += len(text) / 1e6
                if way != "whole":
                    same = same and text == json.dumps(head | {"cache": state.cache} | rest)
        batches += 1
    return {"run": run_dir.name, "evals": len(lines), "batches": batches, "same": same,
            "seconds": seconds, "count": count, "mb": mb,
            "final_mb": (folder / f"{ways[-1]}.json").stat().st_size / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS),
                    help="which ways to replay (default: all three)")
    ap.add_argument("--record", help="also write the markdown here")
    args = ap.parse_args(argv)
    ways = tuple(w for w in WAYS if w in args.ways)
    rows = []
    for run in args.runs:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(replay(run, Path(folder), ways))
        print(rows[-1], file=sys.stderr)
    cols = " | ".join(f"{w} (s) | {w} checkpoints | {w} GB" for w in ways)
    lines = ["# Checkpoint cost over a whole run", "", *header(()), "",
             "command: python benchmarks/checkpoint_cost.py " + " ".join(map(str, args.runs))
             + ("" if ways == WAYS else " --ways " + " ".join(ways)), "",
             f"thinned: a checkpoint once the evaluations since the last make up "
             f"{CHECKPOINT_SHARE:.4g} of the total, and at the end", "",
             f"| run | evaluations | batches | final MB | {cols} | same text |",
             "|---|---:|---:|---:|" + "---:|" * (3 * len(ways)) + "---|"]
    for r in rows:
        cells = " | ".join(f"{r['seconds'][w]:.1f} | {r['count'][w]} | {r['mb'][w] / 1e3:.2f}"
                           for w in ways)
        lines.append(f"| {r['run']} | {r['evals']} | {r['batches']} | {r['final_mb']:.2f} | "
                     f"{cells} | {'yes' if r['same'] else 'NO'} |")
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
