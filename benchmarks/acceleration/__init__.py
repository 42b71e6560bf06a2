"""The acceleration suites and studies: ``python -m benchmarks.acceleration SUITE ...`` runs :mod:`.run`."""
