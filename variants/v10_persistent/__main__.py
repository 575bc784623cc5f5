"""Run as ``python -m variants.<stage>``: the stage explained, checked and timed."""

from common.explain import main

raise SystemExit(main(__package__.rsplit(".", 1)[-1]))
