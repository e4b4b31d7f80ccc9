"""k2probe: test and evaluate coding-model APIs (Kimi K2.7 Code first) through any OpenAI-compatible route."""

__version__ = "0.1.0"
