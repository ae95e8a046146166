"""The quality report: DuckDB profile, constraint checks, self-contained HTML."""
