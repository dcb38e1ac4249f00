"""Alembic migrations of the store; `store.py` runs them, nothing else imports them."""
