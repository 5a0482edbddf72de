"""Telemetry: one trace per call, Prometheus metrics, cost per call, anomaly flags and alerts.

Start at `orchestrator.telemetry.service.Telemetry`; names live in `orchestrator.telemetry.names`.
"""
