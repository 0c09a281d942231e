"""What a search's checkpoints cost over a whole run: the cache serialised whole at every
checkpoint (as until stop 63) against each entry serialised once, as it is added
(``State.cache_json``).

A search checkpoints after every batch, and the cache (every evaluation so far) is most of the
file, so serialising it whole at each grows with the square of the evaluations. This replays a
finished run: its ``events.jsonl`` makes the cache grow as the run's did, batch by batch (the
run's batch size), and after each batch the checkpoint document is written both ways through
``write_atomic`` (a synced temporary file and a rename, as the search writes it), the two ways
alternating which goes first. Reported: the seconds each way summed over the run, their ratio,
the final file's size, and whether the two texts were the same at every batch.

    python benchmarks/checkpoint_cost.py RUN_DIR [RUN_DIR ...] [--record FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import emit, header  # noqa: E402

from hybrid_sld.search.archive import Archive  # noqa: E402
from hybrid_sld.search.state import State, checkpoint_text, write_atomic  # noqa: E402


def replay(run_dir: Path, folder: Path) -> dict:
    """Seconds of the whole-cache and the incremental checkpoints over the run's batches."""
    final = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    head = {k: final[k] for k in ("config", "archive")}
    rest = {k: v for k, v in final.items() if k not in ("config", "archive", "cache")}
    batch = int(final["config"]["batch_size"])
    state = State(Archive(1))
    seconds = {"whole": 0.0, "once": 0.0}
    same, batches = True, 0
    with open(run_dir / "events.jsonl") as fh:
        events = [json.loads(line) for line in fh]
    for start in range(0, len(events), batch):
        for d in events[start:start + batch]:
            state.cache[d["key"]] = {k: v for k, v in d.items() if k != "kept"}
        texts = {}
        ways = ("whole", "once") if batches % 2 == 0 else ("once", "whole")
        for way in ways:
            t0 = time.perf_counter()
            text = (json.dumps(head | {"cache": state.cache} | rest) if way == "whole"
                    else checkpoint_text(head, state, rest))
            write_atomic(folder / f"{way}.json", text)
            seconds[way] += time.perf_counter() - t0
            texts[way] = text
        same = same and texts["whole"] == texts["once"]
        batches += 1
    return {"run": run_dir.name, "evals": len(events), "batches": batches,
            "mb": len(texts["once"]) / 1e6, "same": same, **seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--record", help="also write the markdown here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for run in args.runs:
            rows.append(replay(run, Path(folder)))
            print(rows[-1], file=sys.stderr)
    lines = ["# Checkpoint cost over a whole run", "", *header(()), "",
             "command: python benchmarks/checkpoint_cost.py " + " ".join(map(str, args.runs)),
             "", "| run | evaluations | checkpoints | final MB | whole cache (s) | "
             "each entry once (s) | ratio | same text |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['evals']} | {r['batches']} | {r['mb']:.2f} | "
                     f"{r['whole']:.1f} | {r['once']:.1f} | {r['whole'] / r['once']:.1f}x | "
                     f"{'yes' if r['same'] else 'NO'} |")
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
