"""``python -m common report``: the series report (see common/report.py)."""

import os
import sys

import torch

if not torch.cuda.is_available():
    # Must be set before any stage module is imported, so Triton builds interpreted kernels.
    os.environ.setdefault("TRITON_INTERPRET", "1")

if __name__ == "__main__":
    commands = {"report"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m common {{{','.join(sorted(commands))}}} [options]")
    from common.report import main

    sys.exit(main(sys.argv[2:]))
