"""Producing batches and waiting for their delivery reports.

A batch is acknowledged when every record in it is delivered without error: with the idempotent producer and
``acks=all``, when every in-sync replica has it. Records of one partition are delivered in the order produced,
so a partition's reported offsets, in order, belong to its records, in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventbus.backends.base import Message
from eventbus.backends.kafka.admin import build_client
from eventbus.backends.kafka.clients import producer_config
from eventbus.backends.kafka.config import KafkaSettings
from eventbus.backends.kafka.errors import UNREACHABLE, describe, kafka_error_of, translate, translated
from eventbus.errors import BackendError

logger = logging.getLogger("eventbus.kafka")

# (topic, partition, message): a record with its partition already chosen.
Outgoing = tuple[str, int, Message]

# librdkafka's default message.max.bytes, the largest record `produce` takes.
LIBRDKAFKA_MAX_MESSAGE_BYTES = 1_000_000
# What librdkafka adds to a record's key, value and headers when it checks message.max.bytes: the most a record
# of the v2 format (Kafka 0.11 and later) spends on its own length, attributes, deltas and field lengths.
_RECORD_OVERHEAD_BYTES = 36


def _varint_bytes(length: int) -> int:
    """The size of a length as the record format writes it: a zigzag varint, 7 bits a byte."""
    zigzag = length << 1
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def record_wire_bytes(message: Message) -> int:
    """A record's size as librdkafka counts it against message.max.bytes."""
    size = _RECORD_OVERHEAD_BYTES + len(message.value or b"") + len(message.key or b"")
    for name, value in message.headers or ():
        encoded_name = len(name.encode())
        size += _varint_bytes(encoded_name) + encoded_name
        size += _varint_bytes(len(value)) + len(value)
    return size


class Deliveries:
    """The delivery reports of one batch, gathered by the callback librdkafka calls per record."""

    __slots__ = ("errors", "offsets", "pending")

    def __init__(self, count: int) -> None:
        self.pending = count
        self.offsets: dict[tuple[str, int], list[int]] = {}
        self.errors: list[Any] = []

    def __call__(self, error: Any, message: Any) -> None:
        self.pending -= 1
        if error is not None:
            self.errors.append(error)
            return
        key = (message.topic(), message.partition())
        offsets = self.offsets.get(key)
        if offsets is None:
            self.offsets[key] = [message.offset()]
        else:
            offsets.append(message.offset())

    def fatal(self) -> bool:
        """True when the producer itself failed (it must be replaced), not just some records."""
        return any(is_fatal(e) for e in self.errors)


def is_fatal(error: Any) -> bool:
    kafka_error = kafka_error_of(error)
    return kafka_error is not None and (kafka_error.fatal() or kafka_error.name() == "_FATAL")


def produce_all(
    producer: Any, records: Sequence[Outgoing], on_delivery: Callable[[Any, Any], None] | None
) -> tuple[int, Any | None]:
    """Hand every record to librdkafka, waiting for queue space when its buffer is full.

    Returns how many records were handed over and, when librdkafka refused the next one, its KafkaError.
    """
    from confluent_kafka import KafkaException

    produce = producer.produce
    handed = 0
    for topic, partition, message in records:
        value, key, headers, _, timestamp_ms = message
        while True:
            try:
                if headers is None:
                    produce(
                        topic, value, key, partition=partition, on_delivery=on_delivery, timestamp=timestamp_ms or 0
                    )
                else:
                    produce(
                        topic,
                        value,
                        key,
                        partition=partition,
                        on_delivery=on_delivery,
                        timestamp=timestamp_ms or 0,
                        headers=list(headers),
                    )
                break
            except BufferError:
                # The local queue is full: serve delivery reports (which frees room), then try again.
                producer.poll(0.05)
            except KafkaException as exc:
                return handed, exc.args[0]
        handed += 1
    return handed, None


def wait_for(producer: Any, deliveries: Deliveries, deadline: float, what: str) -> None:
    """Flush until every record of the batch has its delivery report, or fail at ``deadline``. A fatal
    producer error ends the wait: it is added to the batch's errors (nothing more will be reported).

    ``deliveries.pending`` below zero means reports are not counted (only failures are reported): then the
    batch is delivered when librdkafka's queue is empty."""
    from confluent_kafka import KafkaException

    while deliveries.pending != 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackendError(f"{what}: {deliveries.pending} record(s) still unacknowledged; giving up")
        try:
            left = producer.flush(min(remaining, 1.0))
            if deliveries.pending < 0:
                if left == 0:
                    return
            elif left == 0 and deliveries.pending > 0:
                # flush() may return once the queue is empty while another thread still runs our callbacks.
                producer.poll(0.01)
        except (KafkaException, SystemError) as exc:
            # confluent_kafka raises a fatal error out of flush(), either as it is or, when it surfaces while a
            # delivery callback runs, as a SystemError caused by it.
            fatal = exc.__cause__ if isinstance(exc, SystemError) else exc
            if fatal is None or not is_fatal(fatal):
                raise
            deliveries.errors.append(kafka_error_of(fatal))
            return


class BatchProducer:
    """An idempotent producer of one log.

    ``with_offsets``: every record's delivery report comes back to Python, with its offset (what `Log.append`
    returns). Without, librdkafka reports only failures, and a batch is acknowledged once librdkafka holds
    nothing more of it: no Python call per record, and no wait for the GIL per record while another thread
    computes (the worker's outputs, written while the next batch is processed).

    A fatal producer error (the broker lost the producer's state, e.g. after a restart) leaves the producer
    unusable: it is replaced and the records of the batch not known to be acknowledged are sent again.
    """

    def __init__(self, settings: KafkaSettings, *, with_offsets: bool) -> None:
        self._settings = settings
        self._with_offsets = with_offsets
        self._producer: Any = None
        self._fatal: Any = None
        self._failed: list[Any] = []
        # One batch at a time: delivery callbacks of a batch run in whichever thread flushes.
        self._lock = threading.Lock()

    def _client(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            config = producer_config(self._settings)
            # Without an error callback, confluent_kafka raises a fatal error out of whichever call serves it,
            # in the middle of delivery callbacks; noted here, it is acted on after the batch.
            config["error_cb"] = self._on_error
            if not self._with_offsets:
                config["delivery.report.only.error"] = True
                config["on_delivery"] = self._on_failed_delivery
            self._fatal = None
            self._producer = build_client(Producer, config, self._settings)
        return self._producer

    def warm_up(self) -> None:
        """Create the client now: an idempotent producer first obtains a producer id from the brokers, which
        takes librdkafka half a second; started early, that overlaps other work (a consumer joining its group)."""
        with self._lock:
            self._client()

    def _on_failed_delivery(self, error: Any, _message: Any) -> None:
        self._failed.append(error)

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self._fatal = error
        elif error.name() not in UNREACHABLE:
            logger.warning("%s: producer: %s", self._settings.redacted_url, describe(error))

    def send(self, records: Sequence[Outgoing], what: str) -> Deliveries:
        """Produce and wait for acknowledgement of every record; `BackendError` (or a more precise eventbus
        error) naming ``what`` when the brokers refuse or do not answer in time."""
        deadline = time.monotonic() + self._settings.broker_unavailable_timeout_s + 5.0
        with self._lock, translated(what):
            pending = list(records)
            delivered: dict[tuple[str, int], list[int]] = {}
            for attempt in (1, 2):
                deliveries = self._send_once(pending, deadline, what)
                for key, offsets in deliveries.offsets.items():
                    delivered.setdefault(key, []).extend(offsets)
                if not deliveries.errors and self._fatal is None:
                    deliveries.offsets = delivered
                    return deliveries
                failure = self._fatal or deliveries.errors[0]
                if attempt == 1 and (self._fatal is not None or deliveries.fatal()):
                    logger.warning("%s: producer failed (%s); replacing it", what, describe(failure))
                    self._replace()
                    pending = _unacknowledged(records, delivered)
                    continue
                raise translate(failure, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, records: Sequence[Outgoing], deadline: float, what: str) -> Deliveries:
        producer = self._client()
        if self._with_offsets:
            deliveries = Deliveries(len(records))
            handed, refused = produce_all(producer, records, deliveries)
        else:
            self._failed = []
            deliveries = Deliveries(-1)
            deliveries.errors = self._failed
            handed, refused = produce_all(producer, records, None)
        if refused is not None:
            deliveries.errors.append(refused)
            if self._with_offsets:
                # Records never handed over never report.
                deliveries.pending -= len(records) - handed
        # Whatever was handed over reports even after an error; wait for it so the offsets stay in order.
        wait_for(producer, deliveries, deadline, what)
        return deliveries

    def _replace(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            # A fatal producer cannot deliver anything; purge what it holds rather than waiting for it.
            with contextlib.suppress(Exception):  # it is being discarded; nothing to do about its failures
                old.purge()
                old.flush(0)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5.0)
                self._producer = None


def _unacknowledged(records: Sequence[Outgoing], delivered: dict[tuple[str, int], list[int]]) -> list[Outgoing]:
    """The records not yet acknowledged: per partition, everything after the acknowledged prefix."""
    skip = {key: len(offsets) for key, offsets in delivered.items()}
    remaining = []
    for record in records:
        key = (record[0], record[1])
        if skip.get(key, 0) > 0:
            skip[key] -= 1
        else:
            remaining.append(record)
    return remaining
