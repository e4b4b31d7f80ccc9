"""Talking to a route: the openai SDK transport with retries and trace timing, streams, raw probes, uploads, media."""
