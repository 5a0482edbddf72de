"""Redis clients under their old name, until the agent worker's entrypoint imports `orchestrator.redis_client`."""

from orchestrator.redis_client import open_redis

__all__ = ["open_redis"]
