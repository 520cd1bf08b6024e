"""CAVRA Connectors benchmarks: ``python -m bench.run [--quick]`` (``make bench``, ``make bench-quick``)."""
