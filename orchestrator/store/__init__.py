"""Call records: the call, its redacted turns, handoffs, interventions, costs, latencies and anomaly flags."""

from orchestrator.store.records import CallStore, CallView, TurnView, create_records_schema

__all__ = ["CallStore", "CallView", "TurnView", "create_records_schema"]
