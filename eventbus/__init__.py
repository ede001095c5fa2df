"""eventbus: an event bus and stream-processing framework.

>>> from eventbus import App, Event
"""

from eventbus.app import App, CircuitBreaker, Context, Idempotency, Retry
from eventbus.app.results import BatchItemFailures
from eventbus.event import Event, event_type
from eventbus.publisher import Publisher

__all__ = [
    "App",
    "BatchItemFailures",
    "CircuitBreaker",
    "Context",
    "Event",
    "Idempotency",
    "Publisher",
    "Retry",
    "event_type",
]
__version__ = "0.1.0"
