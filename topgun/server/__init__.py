"""The topgun server: :class:`ServerNode` runs one cluster member as asyncio services."""

from topgun.server.config import DEV_SECRET, NodeConfig
from topgun.server.node import ServerNode

__all__ = ["DEV_SECRET", "NodeConfig", "ServerNode"]
