"""`python -m benchmarks {core,...}`: run one benchmark and print its table."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "core": "benchmarks.core",
    "ingest": "benchmarks.ingest",
    "chunks": "benchmarks.chunks",
    "testdrive": "benchmarks.testdrive",
    "faults": "benchmarks.faults",
    "failover": "benchmarks.failover",
    "round": "benchmarks.round",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print(f"usage: python -m benchmarks {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(BENCHMARKS[sys.argv[1]])
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
