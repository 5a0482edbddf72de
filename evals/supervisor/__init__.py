"""Supervisor eval: the labelled escalation-trigger set and its benchmark."""
