"""Whether any broker answers: noticed when librdkafka reports every broker down, checked again while it lasts.

A client keeps retrying on its own while brokers are away. This bounds that: once no broker has answered for
``broker_unavailable_timeout_s``, the next call raises `BackendError` naming the URL, so a worker exits with a
message instead of waiting forever.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from eventbus.errors import BackendError

logger = logging.getLogger("eventbus.kafka")

# How often to ask again, while brokers are away, whether one answers.
_RECHECK_S = 1.0


class BrokerHealth:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._down_since: float | None = None
        self._next_check = 0.0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def lost(self) -> None:
        """librdkafka reports every broker connection down."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._next_check = self._down_since + _RECHECK_S
            logger.warning(
                "%s: no Kafka broker reachable; retrying for up to %g s (broker_unavailable_timeout_s)",
                self._url,
                self._timeout_s,
            )

    def check(self, client: Any) -> None:
        """While brokers are away: ask one for metadata now and then; raise once away too long."""
        down_since = self._down_since
        if down_since is None:
            return
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + _RECHECK_S
            if self._answers(client):
                self._down_since = None
                logger.warning("%s: a Kafka broker answers again after %.1f s", self._url, now - down_since)
                return
        if now - down_since > self._timeout_s:
            raise BackendError(
                f"{self._url}: no Kafka broker answered for {now - down_since:.0f} s "
                f"(broker_unavailable_timeout_s={self._timeout_s:g}); giving up"
            )

    @staticmethod
    def _answers(client: Any) -> bool:
        try:
            client.list_topics(timeout=_RECHECK_S)
        except Exception:  # any failure of the probe means the same: still away
            return False
        return True
