"""``hybrid-sld`` and ``python -m hybrid_sld``: the command line, imported only once running.

numpy, scipy and sympy take a second or two to import; a Ctrl-C in that time ends the command
with "interrupted" and status 130, as it does later, not with a traceback.
"""

import signal
import sys
import threading


def main(argv=None) -> int:
    interrupted = []

    def on_sigint(signum, frame):  # Python's own handler, noting that it ran
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    # noted only where Python's handler is the one (not in a thread, nor where SIGINT is ignored)
    ours = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if ours:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        from .cli import main as cli_main
    except (KeyboardInterrupt, ImportError):
        # an interrupt inside a C extension's import (numpy's) can surface as an ImportError
        if not interrupted:
            raise
        print("interrupted", file=sys.stderr)
        args = sys.argv[1:] if argv is None else argv
        if "--json" in args:  # as cli.main answers a later Ctrl-C: stdout holds one document
            print('{"error": "interrupted"}')
        return 130
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
