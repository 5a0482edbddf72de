"""The worker process: pulls calls when it has free slots, runs their sessions, heartbeats, drains on SIGTERM.

Import the parts from their modules (``worker.Worker``, ``runner.TextCallRunner``, ``tracking.CallTracker``
(call span, live console and record around any session, text or voice), ``main.run_worker``). Outcomes and
hold messages are the queue's (``orchestrator.queue.outcomes``, ``orchestrator.queue.hold``).
"""
