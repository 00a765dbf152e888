"""Storage: a replica directory of two SQLite databases (docs/storage.md)."""

from p2p_prophet.store.database import Database, LogRow, RecordRow, StoredProp
from p2p_prophet.store.edit import EditBatch
from p2p_prophet.store.replica import Replica, default_creator, is_replica

__all__ = [
    "Database",
    "EditBatch",
    "LogRow",
    "RecordRow",
    "Replica",
    "StoredProp",
    "default_creator",
    "is_replica",
]
