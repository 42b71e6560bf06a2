"""megagrow's benchmarks, a package so that every script runs as a module from the repository root:

    python -m benchmarks.phase_cost --rounds 3             # a top-level script: benchmarks/phase_cost.py
    python -m benchmarks.throughput.run --sizes bench      # benchmarks/throughput/run.py
    python -m benchmarks.acceleration gpt --dry-run        # the acceleration suites (benchmarks/acceleration/run.py)
    python -m benchmarks.acceleration.lr_grid ...          # benchmarks/acceleration/lr_grid.py

Not shipped in the wheel (pyproject.toml packages megagrow and data_prep only): the benchmarks run from a checkout.
"""

from __future__ import annotations

import sys


def command(module: str, argv: list[str] | None = None) -> str:
    """How a benchmark was invoked, as typed from the repository root: ``python -m MODULE ARG...`` (``argv``: the
    arguments, default this process's). Recorded in the results."""
    return " ".join(["python", "-m", module, *map(str, sys.argv[1:] if argv is None else argv)])
