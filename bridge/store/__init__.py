"""The durable store: SQLAlchemy Core tables, engine setup and Alembic migrations."""
