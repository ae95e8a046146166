"""The build engine: plan, generate, admit, write, publish; no Prefect inside."""
