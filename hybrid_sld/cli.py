"""``hybrid-sld`` command line: thin argparse over the library.

Errors print one line to stderr and exit 2 (``--debug`` shows the traceback). ``--json``
prints one JSON document to stdout; tables and progress go to stderr / stdout as text.

Here: dispatch and error handling. The parser is cli_parse's; the commands are in cli_score
(tasks, fit, expert, eval-program), cli_discover (with cli_settings), cli_bench and
cli_predict.
"""

from __future__ import annotations

import re
import sys

from .cli_bench import cmd_bench, cmd_report
from .cli_discover import cmd_discover
from .cli_parse import build_parser, given_flags
from .cli_predict import cmd_predict
from .cli_score import cmd_eval_program, cmd_expert, cmd_fit, cmd_tasks
from .errors import HybridSLDError
from .metrics import json_text

# each command's handler, by the name build_parser gives it
COMMANDS = {"tasks": cmd_tasks, "fit": cmd_fit, "discover": cmd_discover, "expert": cmd_expert,
            "bench": cmd_bench, "report": cmd_report, "eval-program": cmd_eval_program,
            "predict": cmd_predict}


def main(argv=None) -> int:
    parser = build_parser(argv)
    argv = _negative_durations_joined(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.given = given_flags(argv)
    try:
        status = COMMANDS[args.command](args)
    except HybridSLDError as exc:
        if args.debug:
            raise
        return _error(args, str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if getattr(args, "json", False):  # a script reading stdout still gets one document
            print(json_text({"error": "interrupted"}))
        return 130
    except BrokenPipeError:  # e.g. `hybrid-sld ... --json | head`: the reader went away
        sys.stderr.close()
        return 1
    except OSError as exc:  # a read or write no command foresaw: a full disk while reporting
        if args.debug:
            raise
        name = f"{exc.filename}: " if exc.filename else ""
        return _error(args, f"{name}{exc.strerror or exc}")
    return status or 0


def _negative_durations_joined(argv: list[str]) -> list[str]:
    """``--budget -5m`` as ``--budget=-5m``: argparse takes a value led by a dash for an
    option unless it is a plain number, and said only "expected one argument"; joined, the
    option's own check says what is wrong with the value."""
    out: list[str] = []
    for a in argv:
        if (out and re.fullmatch(r"-[\d.]+[a-zA-Z]+", a) and out[-1].startswith("--")
                and out[-1] != "--" and "=" not in out[-1]):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def _error(args, message: str) -> int:
    """Status 2, the message on stderr; with --json, stdout still holds one JSON document."""
    print(f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json_text({"error": message}))
    return 2


if __name__ == "__main__":
    sys.exit(main())
