"""Apps the failure crash tests run in subprocesses.

``poison``: events with ``data.poison`` always fail and are dead-lettered after one attempt; others are echoed.
``effects``: an idempotent processor whose side effect is a line appended to the file named by
``EVENTBUS_TEST_EFFECTS``.
"""

import os
import time

from eventbus import App, Event, Idempotency, Retry

poison = App("poison")
poison.topic("p-in", partitions=2)


@poison.processor("p-in", to="p-out", retry=Retry(max_attempts=1))
def echo_or_fail(event: Event) -> Event:
    time.sleep(0.0002)  # a little work, so a kill can land anywhere in a round
    if event.data.get("poison"):
        raise ValueError(f"poison {event.id}")
    return Event("p.done", {"n": event.data["n"]})


effects = App("effects")
effects.topic("e-in", partitions=2)
_effects_fd = os.open(os.environ.get("EVENTBUS_TEST_EFFECTS", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_APPEND)


@effects.processor("e-in", idempotency=Idempotency())
def charge(event: Event) -> None:
    time.sleep(0.0005)  # the call to the outside world
    os.write(_effects_fd, f"{event.id}\n".encode())
