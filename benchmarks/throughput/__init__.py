"""The throughput benchmark: ``python -m benchmarks.throughput.run`` (and ``.activation_memory``)."""
