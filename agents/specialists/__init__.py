"""Specialist agents: scheduling, billing, support and escalation."""
