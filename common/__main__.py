"""``python -m common report`` (the series report) and ``python -m common new`` (a new stage)."""

import sys

COMMANDS = {"report": "common.report", "new": "common.scaffold"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m common {{{','.join(COMMANDS)}}} [options]")
    import importlib

    sys.exit(importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:]))
