"""The encrypted study database: schema, blob store, users and audit (see ``medscan.db.store.Database``).

Nothing is imported here so that ``medscan info`` does not pay for SQLAlchemy at start-up.
"""
