"""Storage: the SQLAlchemy schema, engines, migrations and repositories."""
