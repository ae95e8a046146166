"""Multi-table datasets (`tables:` in a config): related tables built parents first by the
single-table engine, with foreign keys, per-parent counts, children that read their parents,
late columns (aggregates, self references) and one atomic publish. See docs/related-tables.md."""
