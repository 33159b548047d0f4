"""order-worker benchmarks: ``.venv/bin/python -m bench.run`` (see bench/README.md)."""
