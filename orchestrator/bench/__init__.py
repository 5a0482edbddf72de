"""Benchmarks that run as commands: calls through the real stack, with providers simulated at the standard profile."""
