"""The durable job engine: jobs, stages and tasks in a SQL store; runners, workers, janitor.

It imports nothing of geoetl above it (an import-linter contract in pyproject.toml,
checked by tests/engine/test_layers.py).
"""
