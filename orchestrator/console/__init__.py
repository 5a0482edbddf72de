"""The supervisor console: live calls, escalations, call controls and history, behind authentication."""
