"""The run store: one SQLAlchemy database (SQLite under ``NB2PROD_HOME`` by default)."""
