"""Alembic migration environment of the alerting store."""
