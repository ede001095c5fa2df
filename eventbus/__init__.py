"""eventbus: an event bus and stream-processing framework.

>>> from eventbus import App, Event
"""

from eventbus.app import App, Context
from eventbus.event import Event, event_type
from eventbus.publisher import Publisher

__all__ = ["App", "Context", "Event", "Publisher", "event_type"]
__version__ = "0.1.0"
