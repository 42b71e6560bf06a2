"""``python -m benchmarks.acceleration SUITE ...``: run an acceleration suite or study (``run.py``'s ``main``)."""

from benchmarks.acceleration.run import main

if __name__ == "__main__":
    raise SystemExit(main())
