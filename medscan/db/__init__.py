"""The encrypted study database: schema, blob store, users and audit (see ``store.Database``)."""

from medscan.db.store import Database, restore

__all__ = ["Database", "restore"]
