"""Alembic environment of the run store. nb2prod runs it through ``nb2prod.store.migrate`` only, on the
connection (and transaction, holding the migration lock) it passes in ``config.attributes["connection"]``."""

from alembic import context

from nb2prod.store.migrate import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], version_table=VERSION_TABLE,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
