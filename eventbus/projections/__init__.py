"""Projections: read models folded from events, with exactly-once checkpoints in the store's own transactions.

Stores: SQLite (`sqlite:///path.db`) and PostgreSQL (`postgresql://...`). See `store` for the contract, `fold` and
`runner` for folding, `reader` for queries, `rebuild` for blue/green rebuilds.
"""

from eventbus.projections.aggregates import Aggregate, CommandRejectedError, ConcurrencyError
from eventbus.projections.eventstore import EventStore
from eventbus.projections.reader import ProjectionReader, Read
from eventbus.projections.store import ProjectionGapError, ProjectionStore, open_store
from eventbus.projections.view import View

__all__ = [
    "Aggregate",
    "CommandRejectedError",
    "ConcurrencyError",
    "EventStore",
    "ProjectionGapError",
    "ProjectionReader",
    "ProjectionStore",
    "Read",
    "View",
    "open_store",
]
