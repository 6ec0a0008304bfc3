"""Alembic environment. sparkgrade runs it in code (autograder.db.engine.upgrade) with an open connection in
config.attributes["connection"]; `python -m autograder.db` uses the same path for new revisions and checks."""

from alembic import context

from autograder.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through autograder.db (python -m autograder.db ...), which opens the database")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    render_as_batch=True,  # SQLite alters a table by rebuilding it; batch mode writes migrations that do
)
with context.begin_transaction():
    context.run_migrations()
