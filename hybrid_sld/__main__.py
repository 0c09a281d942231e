"""``hybrid-sld`` and ``python -m hybrid_sld``: the command line, imported only once running.

numpy, scipy and sympy take a second or two to import; a Ctrl-C in that time ends the command
with "interrupted" and status 130, as it does later, not with a traceback.
"""

import sys


def main(argv=None) -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
