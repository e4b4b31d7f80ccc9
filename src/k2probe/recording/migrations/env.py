"""Alembic's environment for the store: run on the connection the store hands over (see recording/migrate.py)."""

from alembic import context

from k2probe.recording.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
