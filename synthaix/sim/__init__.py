"""OpenAI-compatible simulator."""
