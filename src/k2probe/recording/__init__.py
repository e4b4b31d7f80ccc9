"""What was recorded: the store (SQLAlchemy) that every command writes and the report reads."""
