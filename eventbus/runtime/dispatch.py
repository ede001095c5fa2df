"""Decode and route: one polled batch becomes, per processor, the positions of the events it must see.

Each record is decoded once into its CloudEvents dict; each topic has one `Router` holding the patterns of the
processors subscribed to it, so routing costs the same whether an app has two processors or two hundred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventbus.app.processor import Processor
from eventbus.backends.base import RecordBatch
from eventbus.codecs import AvroDataDecoder, decode_record
from eventbus.codecs.structured import decode_structured
from eventbus.errors import DecodeError
from eventbus.routing import Router
from eventbus.runtime.dead_letter import REPLAY_TARGET, replay_target


class PoisonRecordError(DecodeError):
    """A record that cannot be decoded, with where it is (raised when its processors say to stop on failure)."""

    def __init__(self, topic: str, partition: int, offset: int, cause: DecodeError) -> None:
        super().__init__(f"{topic}[{partition}]@{offset}: {cause}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.cause = cause


@dataclass(slots=True)
class RoutedBatch:
    """A decoded batch of one partition and, per processor index, the positions (into ``offsets``/``events``)
    of the events that processor receives, in offset order.

    ``records`` is the batch as read, for dead-lettering a record unchanged. A record that could not be decoded
    has ``None`` in ``events`` and its error in ``poison``; it is routed nowhere.
    """

    topic: str
    partition: int
    offsets: Sequence[int]
    events: list[dict[str, Any] | None]
    targets: dict[int, list[int]]
    next_offset: int
    records: RecordBatch
    poison: list[tuple[int, DecodeError]]


@dataclass(slots=True)
class _TopicRoute:
    router: Router[int] | None
    unfiltered: tuple[int, ...]


class Dispatcher:
    """Routing tables for every subscribed topic of an app. ``avro`` decodes the data of Avro records."""

    def __init__(self, processors: Sequence[Processor], avro: AvroDataDecoder | None = None) -> None:
        self.processors = tuple(processors)
        self._avro = avro
        routes: dict[str, _TopicRoute] = {}
        for index, processor in enumerate(self.processors):
            for topic in processor.topics:
                route = routes.setdefault(topic, _TopicRoute(None, ()))
                if processor.pattern is None:
                    route.unfiltered = (*route.unfiltered, index)
                else:
                    if route.router is None:
                        route.router = Router()
                    route.router.add(processor.pattern, index)
        self._routes = routes
        self._index_by_name = {processor.name: index for index, processor in enumerate(self.processors)}

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._routes)

    def route(self, batch: RecordBatch) -> RoutedBatch:
        events, poison = self._decode(batch)
        route = self._routes[batch.topic]
        targets: dict[int, list[int]] = {}
        if route.unfiltered:
            everything = list(range(len(events))) if not poison else [p for p, e in enumerate(events) if e]
            for index in route.unfiltered:
                targets[index] = everything
        router = route.router
        if router is not None:
            match = router.match
            for position, attrs in enumerate(events):
                if attrs is None:
                    continue
                for index in match(attrs):
                    bucket = targets.get(index)
                    if bucket is None:
                        targets[index] = [position]
                    else:
                        bucket.append(position)
        if targets and any(batch.headers):
            targets = self._narrow_replays(batch, targets)
        return RoutedBatch(
            batch.topic, batch.partition, batch.offsets, events, targets, batch.next_offset, batch, poison
        )

    def _narrow_replays(self, batch: RecordBatch, targets: dict[int, list[int]]) -> dict[int, list[int]]:
        """``targets`` without the replayed records that are for another processor (or a projection): the
        processors that handled the original need not see it again."""
        only: dict[int, int | None] = {}
        for position, headers in enumerate(batch.headers):
            if headers and headers[0][0] == REPLAY_TARGET:
                only[position] = self._index_by_name.get(replay_target(headers) or "")
        if not only:
            return targets
        narrowed: dict[int, list[int]] = {}
        for index, positions in targets.items():
            kept = [p for p in positions if only.get(p, index) == index]
            if kept:
                narrowed[index] = kept
        return narrowed

    def _decode(self, batch: RecordBatch) -> tuple[list[dict[str, Any] | None], list[tuple[int, DecodeError]]]:
        events: list[dict[str, Any] | None] = []
        poison: list[tuple[int, DecodeError]] = []
        structured_only = not any(batch.headers)
        avro = self._avro
        for position, value in enumerate(batch.values):
            # The embedded log stores structured JSON without headers: one parse per record, nothing else.
            try:
                if structured_only:
                    events.append(decode_structured(value))
                else:
                    events.append(decode_record(value, batch.headers[position], avro))
            except DecodeError as exc:
                events.append(None)
                poison.append((position, exc))
        return events, poison
