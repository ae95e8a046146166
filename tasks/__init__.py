"""Prefect tasks: thin wrappers that add retries, names and tags to `synthaix` functions."""
