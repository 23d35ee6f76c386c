"""Storage: SQLAlchemy Core tables, migrations, one module per aggregate, and the executor that
runs each store function in a bounded worker-thread pool."""

from pushgo.store.engine import Store

__all__ = ["Store"]
