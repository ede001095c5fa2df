"""A member of a Kafka consumer group, as the log contract's `Consumer`.

Committing (`publish_and_commit`), in this order (the numbers appear again in the code):

1. Refuse at once if a partition of the offsets is no longer this member's: nothing is produced.
2. Produce the outputs and wait until every one is acknowledged (idempotent producer, ``acks=all``).
3. Commit the offsets, synchronously. A crash between 2 and 3 redelivers the events; it never loses one.

In exactly-once mode 2 and 3 are one Kafka transaction (see `transactions`).

Rebalances (cooperative-sticky by default, so only moving partitions stop): partitions being taken away are
given to the revoke listener first, inside `poll`, while this member still owns them, so the commit in flight
lands; then they are released. Partitions assigned start at the group's committed offset, or, without one,
where ``ConsumerSettings.reset`` says. A commit refused because the group moved on raises
`PartitionRevokedError`, and partitions of it this member still owns are read again from their committed offset,
so no event between the committed offset and the refused one goes unprocessed.

Broker trouble: while no broker answers, `poll` keeps trying and, after ``broker_unavailable_timeout_s``, raises
`BackendError`; commits wait no longer than that either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from eventbus.backends.base import Consumer, ConsumerSettings, Message, RecordBatch, RevokeListener, TopicPartition
from eventbus.backends.kafka.admin import REQUEST_TIMEOUT_S, build_client
from eventbus.backends.kafka.clients import consumer_config
from eventbus.backends.kafka.errors import UNREACHABLE, describe, error_name, translate
from eventbus.backends.kafka.health import BrokerHealth
from eventbus.backends.kafka.reader import OFFSET_BEGINNING
from eventbus.backends.kafka.records import sort_out
from eventbus.backends.kafka.transactions import TransactionalProducer
from eventbus.errors import BackendError, EventbusError, PartitionRevokedError

if TYPE_CHECKING:
    from eventbus.backends.kafka.log import KafkaLog

logger = logging.getLogger("eventbus.kafka")

# Errors a consume may report that only say a subscribed topic does not exist (yet): the worker creates topics.
_TOPIC_MISSING = frozenset({"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "_UNKNOWN_PARTITION"})


class KafkaConsumer(Consumer):
    def __init__(self, log: KafkaLog, group: str, topics: Sequence[str], settings: ConsumerSettings) -> None:
        from confluent_kafka import Consumer as KafkaClient

        if not group:
            raise ValueError("a consumer group needs a non-empty name")
        self._log = log
        self._group = group
        self._topics = tuple(dict.fromkeys(topics))
        self._settings = settings
        self._url = log.settings.redacted_url
        self._what = f"{self._url}: group {group!r}"
        self._default_type = log.settings.default_type
        self._health = BrokerHealth(self._url, log.settings.broker_unavailable_timeout_s)
        config = consumer_config(log.settings, group, settings)
        config["error_cb"] = self._on_client_error
        # Incremental (cooperative) rebalancing hands over only moving partitions; eager takes all back first.
        self._incremental = str(config.get("group.protocol", "")).lower() == "consumer" or "cooperative" in str(
            config.get("partition.assignment.strategy", "")
        )
        self._client = build_client(KafkaClient, config, log.settings)
        # Written by the polling thread only (inside rebalance callbacks); read by the committing thread.
        self._assignment: frozenset[TopicPartition] = frozenset()
        # The next offset to read per owned partition; None until known (reading from the beginning).
        self._positions: dict[TopicPartition, int | None] = {}
        self._joined = False
        self._closing = False
        self._closed = False
        self._buffer: list[Any] = []
        self._paused: set[TopicPartition] = set()
        # Where each owned partition was first read from (without a committed offset, that is where to go back).
        self._starts: dict[TopicPartition, int] = {}
        self._revoke_listener: RevokeListener | None = None
        # Partitions whose refused commit means they must be read again from their committed offset.
        self._rewind: set[TopicPartition] = set()
        self._rewind_lock = threading.Lock()
        self._failure: EventbusError | None = None
        # Synchronous commits run here so a commit to a coordinator that never answers cannot block forever.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventbus-kafka-commit")
        self._transactions: TransactionalProducer | None = None
        if settings.processing_guarantee == "exactly_once":
            self._transactions = TransactionalProducer(log.settings, group)
        self._client.subscribe(
            list(self._topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._await_first_assignment()

    @property
    def log(self) -> KafkaLog:
        return self._log

    def set_revoke_listener(self, listener: RevokeListener) -> None:
        self._revoke_listener = listener

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assignment

    # -- joining and rebalancing ----------------------------------------------------------------------------------

    def _await_first_assignment(self) -> None:
        """Serve the client until the group gives this member its first assignment (possibly empty), so a new
        member owns its partitions when it is returned, as on every other log."""
        timeout_s = 2 * self._settings.session_timeout_s + 5.0
        deadline = time.monotonic() + timeout_s
        while not self._joined and time.monotonic() < deadline:
            self._health.check(self._client)
            self._buffer.extend(self._client.consume(500, 0.05))
        if not self._joined:
            logger.warning(
                "%s: no partitions assigned after %.0f s; still waiting for the group", self._what, timeout_s
            )

    def _on_assign(self, client: Any, partitions: list[Any]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        starts = self._starting_offsets(client, partitions)
        assigned = [KafkaTopicPartition(tp.topic, tp.partition, start) for tp, start in starts.items()]
        if self._incremental:
            client.incremental_assign(assigned)
            owned = self._assignment | starts.keys()
        else:
            client.assign(assigned)
            owned = frozenset(starts)
        for tp, start in starts.items():
            self._positions[tp] = None if start == OFFSET_BEGINNING else start
            self._starts[tp] = start
        self._assignment = frozenset(owned)
        if self._transactions is not None:
            self._transactions.follow(self._assignment, starts)
        self._joined = True
        if starts:
            logger.info("%s: partitions assigned: %s", self._what, ", ".join(sorted(map(str, starts))))

    def _starting_offsets(self, client: Any, partitions: list[Any]) -> dict[TopicPartition, int]:
        """Committed offsets where there are; else the beginning or, with reset=latest, the current end."""
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        if not tps:
            return {}
        try:
            committed = client.committed(partitions, timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:
            raise translate(exc, f"{self._what}: reading committed offsets") from None
        starts: dict[TopicPartition, int] = {}
        fresh: list[TopicPartition] = []
        for kafka_tp in committed:
            tp = TopicPartition(kafka_tp.topic, kafka_tp.partition)
            if kafka_tp.offset >= 0:
                starts[tp] = kafka_tp.offset
            else:
                fresh.append(tp)
        if fresh and self._settings.reset == "latest":
            # Resolved here, by fetching, rather than by librdkafka's reset: records appended after this member
            # was given the partition are then never skipped.
            for tp, (_, end) in self._log.bounds.of(dict.fromkeys(fresh)).items():
                starts[tp] = end
        else:
            for tp in fresh:
                starts[tp] = OFFSET_BEGINNING
        return starts

    def _on_revoke(self, client: Any, partitions: list[Any]) -> None:
        self._release(client, partitions, lost=False)

    def _on_lost(self, client: Any, partitions: list[Any]) -> None:
        self._release(client, partitions, lost=True)

    def _release(self, client: Any, partitions: list[Any], *, lost: bool) -> None:
        gone = frozenset(TopicPartition(p.topic, p.partition) for p in partitions)
        if gone and self._revoke_listener is not None and not self._closing:
            # Still owned here: the listener lets the commit in flight land before the partitions move.
            self._revoke_listener(gone)
        if self._incremental:
            client.incremental_unassign(partitions)
        else:
            client.unassign()
        self._assignment = self._assignment - gone
        if self._transactions is not None and gone:
            self._transactions.follow(self._assignment, ())
        self._paused -= gone
        for tp in gone:
            self._positions.pop(tp, None)
            self._starts.pop(tp, None)
        if gone:
            self._buffer = [m for m in self._buffer if TopicPartition(m.topic(), m.partition()) not in gone]
            logger.info(
                "%s: partitions %s: %s", self._what, "lost" if lost else "revoked", ", ".join(sorted(map(str, gone)))
            )

    def _on_client_error(self, error: Any) -> None:
        # Called from inside consume, on the polling thread.
        name = error.name()
        if name == "_ALL_BROKERS_DOWN":
            self._health.lost()
        elif error.fatal():
            self._failure = translate(error, f"{self._what}: the consumer failed")
        elif name not in UNREACHABLE:
            logger.warning("%s: %s", self._what, describe(error))

    # -- reading --------------------------------------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[RecordBatch]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._before_reading()
            batches = self._sort(self._next_messages(max_records, deadline))
            if batches or time.monotonic() >= deadline or self._closed:
                return batches

    def _before_reading(self) -> None:
        if self._failure is not None:
            raise self._failure
        self._health.check(self._client)
        if self._rewind:
            self._apply_rewinds()

    def _next_messages(self, max_records: int, deadline: float) -> list[Any]:
        if self._buffer:
            taken, self._buffer = self._buffer[:max_records], self._buffer[max_records:]
            return taken
        client = self._client
        # consume() waits for a full batch or the whole timeout; take what is there, else wait for the first.
        messages: list[Any] = client.consume(max_records, 0)
        if messages:
            return messages
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        first = client.poll(remaining)
        if first is None:
            return []
        return [first, *client.consume(max_records - 1, 0)] if max_records > 1 else [first]

    def _sort(self, messages: list[Any]) -> list[RecordBatch]:
        if not messages:
            return []
        consumed = sort_out(messages, self._default_type)
        for error in consumed.errors:
            self._on_consume_error(error)
        positions = self._positions
        owned = self._assignment
        paused = self._paused
        batches = []
        for batch in consumed.batches:
            tp = TopicPartition(batch.topic, batch.partition)
            # Records of a partition revoked while this consume ran belong to its next owner now; records of a
            # paused partition fetched before the pause are read again after `resume`.
            if tp in owned and tp not in paused:
                # An end event handled earlier (by caught_up) may already be past these records' last offset.
                known = positions.get(tp)
                positions[tp] = batch.next_offset if known is None else max(known, batch.next_offset)
                batches.append(batch)
        for (topic, partition), end in consumed.ends.items():
            tp = TopicPartition(topic, partition)
            if tp in owned and tp not in paused:
                known = positions.get(tp)
                positions[tp] = end if known is None else max(known, end)
        return batches

    def _on_consume_error(self, error: Any) -> None:
        name = error_name(error)
        if error.fatal():
            raise translate(error, f"{self._what}: the consumer failed")
        if name in _TOPIC_MISSING:
            logger.debug("%s: %s", self._what, describe(error))
        elif name == "_ALL_BROKERS_DOWN":
            self._health.lost()
        elif name in UNREACHABLE:
            logger.debug("%s: %s", self._what, describe(error))
        else:
            logger.warning("%s: %s", self._what, describe(error))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if tp not in self._assignment:
            return
        self._buffer = [m for m in self._buffer if (m.topic(), m.partition()) != tp]
        target = KafkaTopicPartition(tp.topic, tp.partition, offset)
        try:
            self._client.seek(target)
        except KafkaException:
            # Not fetching yet (just assigned): assigning again at the offset has the same effect.
            self._client.incremental_unassign([KafkaTopicPartition(tp.topic, tp.partition)])
            self._client.incremental_assign([target])
        self._positions[tp] = offset

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        paused = set(partitions) & self._assignment
        if not paused:
            return
        self._client.pause([KafkaTopicPartition(tp.topic, tp.partition) for tp in paused])
        self._paused |= paused
        # Records already fetched for them wait in librdkafka or here; `resume` reads them again from the position.
        self._buffer = [m for m in self._buffer if (m.topic(), m.partition()) not in paused]

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        resumed = set(partitions) & self._paused
        if not resumed:
            return
        self._paused -= resumed
        self._client.resume([KafkaTopicPartition(tp.topic, tp.partition) for tp in resumed])
        for tp in resumed:
            if tp in self._assignment:
                # From the last record handed out, whatever librdkafka fetched (and dropped) meanwhile.
                position = self._positions.get(tp)
                self.seek(tp, OFFSET_BEGINNING if position is None else position)
                self._positions[tp] = position

    def _apply_rewinds(self) -> None:
        with self._rewind_lock:
            rewind, self._rewind = self._rewind & self._assignment, set()
        if not rewind:
            return
        committed = self._log.committed_offsets(self._group, rewind)
        for tp in sorted(rewind):
            offset = committed.get(tp, self._starts.get(tp, OFFSET_BEGINNING))
            self.seek(tp, offset)
            if offset == OFFSET_BEGINNING:
                self._positions[tp] = None
        logger.info("%s: reading again from the committed offsets: %s", self._what, ", ".join(map(str, rewind)))

    def caught_up(self) -> bool:
        self._before_reading()
        if not self._buffer:
            # Serve the client (rebalances, end events) and keep what arrived for the next poll.
            messages = self._client.consume(500, 0)
            records = [m for m in messages if m.error() is None]
            self._sort([m for m in messages if m.error() is not None])
            self._buffer.extend(records)
        if not self._joined or self._buffer:
            return False
        owned = self._assignment
        if not owned:
            return True
        starts = {tp: self._positions.get(tp) for tp in owned}
        try:
            bounds = self._log.bounds.of(starts)
        except BackendError as exc:
            logger.debug("%s: cannot tell whether caught up: %s", self._what, exc)
            return False
        for tp in owned:
            start, end = bounds[tp]
            position = self._positions.get(tp)
            if (start if position is None else position) < end:
                return False
        return True

    # -- committing -----------------------------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.publish_and_commit({}, offsets)

    def publish_and_commit(
        self, outputs: Mapping[str, Sequence[Message]], offsets: Mapping[TopicPartition, int]
    ) -> None:
        if self._failure is not None:
            raise self._failure
        self._refuse_unowned(offsets)  # 1
        records = self._log.outgoing(outputs)
        try:
            if self._transactions is not None:
                if records or offsets:
                    self._transactions.commit(records, offsets, self._client.consumer_group_metadata())  # 2, 3
                return
            if records:
                self._log.producer.send(records, f"{self._url}: writing the outputs of group {self._group!r}")  # 2
            if offsets:
                self._commit_offsets(offsets)  # 3
        except PartitionRevokedError:
            self._read_again(offsets)
            raise

    def _refuse_unowned(self, offsets: Mapping[TopicPartition, int]) -> None:
        owned = self._assignment
        lost = sorted(str(tp) for tp in offsets if tp not in owned)
        pending = sorted(str(tp) for tp in offsets if tp in self._rewind)
        if lost or pending:
            self._read_again(offsets)
            reason = f"partitions moved to another member: {lost}" if lost else f"being read again: {pending}"
            raise PartitionRevokedError(f"{self._what}: {reason}")

    def _read_again(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The caller drops its state for these partitions; those still owned are read again from their
        committed offset (see the module docstring)."""
        with self._rewind_lock:
            self._rewind.update(offsets)

    def _commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        positions = [KafkaTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        timeout_s = self._log.settings.broker_unavailable_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            future = self._committer.submit(self._client.commit, offsets=positions, asynchronous=False)
            try:
                result = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                self._failure = BackendError(
                    f"{self._what}: committing offsets got no answer within {timeout_s:g} s "
                    "(broker_unavailable_timeout_s)"
                )
                raise self._failure from None
            except Exception as exc:
                if error_name(exc) in UNREACHABLE and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise translate(exc, f"{self._what}: committing offsets") from None
            failed = [tp for tp in result or () if tp.error is not None]
            if failed:
                raise translate(failed[0].error, f"{self._what}: committing offsets of {failed[0].topic}")
            return

    # -- leaving --------------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closing = True
        try:
            if self._transactions is not None:
                self._transactions.close()
        finally:
            self._closed = True
            self._buffer = []
            self._assignment = frozenset()
            self._positions.clear()
            self._committer.shutdown(wait=False)
            closer = threading.Thread(target=self._client.close, name="eventbus-kafka-close", daemon=True)
            closer.start()
            # Leaving the group takes one round trip; a broker that is gone must not hold the process.
            closer.join(self._settings.session_timeout_s + 5.0)
