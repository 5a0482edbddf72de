"""Loopback stand-ins that speak the vendors' wire protocols (Deepgram, OpenAI, Anthropic, Cartesia).

The contract tests script them reply by reply; the call benchmark runs them at the standard latency profile.
"""
