"""The grade database: SQLAlchemy models, engine set-up, and Alembic migrations shipped inside the package."""

from autograder.db.engine import open_engine, sqlite_url, upgrade
from autograder.db.models import Base

__all__ = ["Base", "open_engine", "sqlite_url", "upgrade"]
