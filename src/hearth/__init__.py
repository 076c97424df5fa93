"""hearth: a self-hosted platform for LLM applications on open models."""

__version__ = "0.1.0"
