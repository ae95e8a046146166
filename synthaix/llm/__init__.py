"""LLM access: the provider client, prompts, parsing and batch filling."""
