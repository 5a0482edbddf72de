"""The worker process: pulls calls when it has free slots, runs their sessions, heartbeats, drains on SIGTERM.

Import the parts from their modules (``worker.Worker``, ``runner.TextCallRunner``, ``tracking.CallTracker``
(call span, live console and record around any session, text or voice), ``outcomes``, ``hold``,
``main.run_worker``); this package stays light so the API can read outcomes and hold
messages without loading the session stack.
"""
