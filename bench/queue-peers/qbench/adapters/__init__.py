"""Adapter registry: name -> module, extra environment, optional own virtualenv.

An adapter module runs as ``python -m <module> worker|produce --url ...`` (see
qbench.common.parse_cli). To measure the team's own queue, add one more entry
(copy qbench/adapters/raw_streams.py as the starting point).

``venv`` (relative to bench/queue-peers) is for peers whose pins conflict with the
others: taskiq-redis 1.2.x needs redis-py >= 7 while arq needs redis-py < 6.
"""

ADAPTERS: dict[str, dict] = {
    "raw-streams": {"module": "qbench.adapters.raw_streams", "env": {"RAW_BATCH": "0"}},
    "raw-streams-batch": {"module": "qbench.adapters.raw_streams", "env": {"RAW_BATCH": "1"}},
    "arq": {"module": "qbench.adapters.arq_adapter"},
    "saq": {"module": "qbench.adapters.saq_adapter"},
    "streaq": {"module": "qbench.adapters.streaq_adapter"},
    "taskiq-redis-stream": {"module": "qbench.adapters.taskiq_adapter",
                            "venv": ".venv-taskiq"},
    "rq": {"module": "qbench.adapters.rq_adapter"},
    "celery": {"module": "qbench.adapters.celery_adapter"},
    "dramatiq": {"module": "qbench.adapters.dramatiq_adapter"},
    # The team's queue runs in the main repo's venv (redis-py 8, pydantic 2).
    "ours": {"module": "qbench.adapters.ours_adapter", "venv": "../../.venv"},
}
