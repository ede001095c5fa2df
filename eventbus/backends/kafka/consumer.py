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

Threads: every call into the librdkafka consumer goes through a `Gate` (see `gate`), which lets the commit
of the committing thread run while the polling thread waits in a rebalance callback for the revoke listener.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from eventbus.backends.base import Consumer, ConsumerSettings, Message, RecordBatch, RevokeListener, TopicPartition
from eventbus.backends.kafka.admin import REQUEST_TIMEOUT_S, build_client
from eventbus.backends.kafka.clients import consumer_config
from eventbus.backends.kafka.errors import JOIN_REFUSED, UNREACHABLE, describe, error_name, translate, translated
from eventbus.backends.kafka.gate import Gate
from eventbus.backends.kafka.health import BrokerHealth
from eventbus.backends.kafka.reader import OFFSET_BEGINNING
from eventbus.backends.kafka.records import sort_out
from eventbus.backends.kafka.transactions import TransactionalProducer
from eventbus.errors import BackendError, ConfigurationError, EventbusError, PartitionRevokedError

if TYPE_CHECKING:
    from eventbus.backends.kafka.log import KafkaLog

logger = logging.getLogger("eventbus.kafka")

P = ParamSpec("P")
R = TypeVar("R")


def _refuses_join(error: Any) -> bool:
    return error is not None and error_name(error) in JOIN_REFUSED


def _boundary(
    action: str,
) -> Callable[[Callable[Concatenate[KafkaConsumer, P], R]], Callable[Concatenate[KafkaConsumer, P], R]]:
    """A public method: confluent_kafka errors leave it as eventbus errors naming the group and ``action``."""

    def wrap(method: Callable[Concatenate[KafkaConsumer, P], R]) -> Callable[Concatenate[KafkaConsumer, P], R]:
        def guarded(self: KafkaConsumer, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with translated(f"{self._what}: {action}"):
                return method(self, *args, **kwargs)

        functools.update_wrapper(guarded, method)
        return guarded

    return wrap


# The longest the polling thread stays inside the client at a time, so a commit waits no longer for its turn.
_SLICE_S = 0.01

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
        self._instance_id = config.get("group.instance.id")
        # Incremental (cooperative) rebalancing hands over only moving partitions; eager takes all back first.
        self._kip848 = str(config.get("group.protocol", "")).lower() == "consumer"
        self._incremental = self._kip848 or "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._client = build_client(KafkaClient, config, log.settings)
        # The session timeout in force (the URL may override ConsumerSettings'); the broker's, with KIP-848.
        self._session_s = int(config.get("session.timeout.ms", settings.session_timeout_s * 1000)) / 1000
        self._session_setting = config.get("session.timeout.ms")
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
        self._gate = Gate(self._what)
        # A client call that has not returned after this long will not: the brokers are gone.
        self._stuck_after_s = log.settings.broker_unavailable_timeout_s
        self._transactions: TransactionalProducer | None = None
        if settings.processing_guarantee == "exactly_once":
            self._transactions = TransactionalProducer(log.settings, group)
        else:
            log.outputs_producer.warm_up()
        with self._gate.held(self._stuck_after_s):
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
        timeout_s = 2 * self._session_s + 5.0
        deadline = time.monotonic() + timeout_s
        while not self._joined and time.monotonic() < deadline:
            with self._gate.held(self._stuck_after_s):
                self._health.check(self._client)
                self._buffer.extend(self._client.consume(500, _SLICE_S))
            failure = self._failure
            if failure is None:
                failure = next((self._refusal(m.error()) for m in self._buffer if _refuses_join(m.error())), None)
            if failure is not None:
                # The caller never gets this consumer, so nobody else would close it.
                self.close()
                raise failure
        if not self._joined:
            # librdkafka says nothing above debug level when the broker lacks KIP-848's heartbeat: say it here.
            hint = (
                " (group.protocol=consumer needs a broker with KIP-848, Apache Kafka 4.0 or later; without it the "
                "member never joins)"
                if self._kip848
                else ""
            )
            logger.warning(
                "%s: no partitions assigned after %.0f s; still waiting for the group%s", self._what, timeout_s, hint
            )

    def _on_assign(self, client: Any, partitions: list[Any]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        starts = self._starting_offsets(client, partitions)
        # From offset 0 rather than the logical beginning (a ListOffsets round trip and half a second in
        # librdkafka); where the partition no longer starts at 0, auto.offset.reset=earliest moves to its start.
        assigned = [KafkaTopicPartition(tp.topic, tp.partition, max(start, 0)) for tp, start in starts.items()]
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
        listener = self._revoke_listener
        if gone and listener is not None and not self._closing:
            # Still owned here: the listener lets the commit in flight land before the partitions move. That
            # commit needs the client, which this callback holds: the gate runs it here while the listener waits.
            self._gate.run_posted_while(lambda: listener(gone))
        if self._incremental:
            client.incremental_unassign(partitions)
        else:
            client.unassign()
        self._assignment = self._assignment - gone
        if self._transactions is not None and gone:
            self._transactions.follow(self._assignment, ())
        self._paused -= gone
        with self._rewind_lock:
            # Whoever owns them next starts from the committed offsets anyway.
            self._rewind -= gone
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
        elif error.fatal() or name == "_FATAL":
            self._failure = self._fatal(error)
        elif name in JOIN_REFUSED:
            self._failure = self._refusal(error)
        elif name not in UNREACHABLE:
            logger.warning("%s: %s", self._what, describe(error))

    def _fatal(self, error: Any) -> EventbusError:
        """The error that stops a consumer librdkafka has given up on (its error callback reports that as
        ``_FATAL``, which ``fatal()`` does not flag)."""
        if self._instance_id and "fenced" in str(error).lower():
            # Restarting would fence the other member in turn: this is a configuration mistake, not a crash.
            return ConfigurationError(
                f"{self._what}: another member joined with the same group.instance.id ({self._instance_id!r}) and "
                "the broker fenced this one out; give each process an id of its own (the workers of "
                "eventbus run --workers N are numbered: ID-0, ID-1, ...)"
            )
        return translate(error, f"{self._what}: the consumer failed")

    def _refusal(self, error: Any) -> EventbusError:
        """The error that stops a member the group coordinator will not take, naming what it refused."""
        what = f"{self._what}: joining the group"
        if error_name(error) == "INVALID_SESSION_TIMEOUT" and self._session_setting is not None:
            # The value may come from eventbus's defaults rather than the URL: name it, and where to change it.
            what += f" with session.timeout.ms={self._session_setting} (set it in the URL: ?session.timeout.ms=N)"
        return translate(error, what)

    # -- reading --------------------------------------------------------------------------------------------------

    @_boundary("polling")
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
        if self._health.down:
            with self._gate.held(self._stuck_after_s):
                self._health.check(self._client)
        if self._rewind:
            self._apply_rewinds()

    def _next_messages(self, max_records: int, deadline: float) -> list[Any]:
        if self._buffer:
            return self._next_buffered(max_records)
        client = self._client
        # consume() waits for a full batch or the whole timeout: take what is there, else wait for the first
        # message, in slices, so a commit posted meanwhile gets the client between them.
        with self._gate.held(self._stuck_after_s):
            messages: list[Any] = client.consume(max_records, 0)
        while not messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._buffer:
                return messages or self._next_buffered(max_records)
            with self._gate.held(self._stuck_after_s):
                first = client.poll(min(remaining, _SLICE_S))
                if first is not None:
                    messages = [first, *client.consume(max_records - 1, 0)] if max_records > 1 else [first]
        return messages

    def _next_buffered(self, max_records: int) -> list[Any]:
        taken, self._buffer = self._buffer[:max_records], self._buffer[max_records:]
        return taken

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
        if error.fatal() or name == "_FATAL":
            raise self._fatal(error)
        if name in JOIN_REFUSED:
            raise self._refusal(error)
        if name in _TOPIC_MISSING:
            logger.debug("%s: %s", self._what, describe(error))
        elif name == "_ALL_BROKERS_DOWN":
            self._health.lost()
        elif name in UNREACHABLE:
            logger.debug("%s: %s", self._what, describe(error))
        else:
            logger.warning("%s: %s", self._what, describe(error))

    @_boundary("seeking")
    def seek(self, tp: TopicPartition, offset: int) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if tp not in self._assignment:
            return
        self._buffer = [m for m in self._buffer if (m.topic(), m.partition()) != tp]
        target = KafkaTopicPartition(tp.topic, tp.partition, offset)
        with self._gate.held(self._stuck_after_s):
            try:
                self._client.seek(target)
            except KafkaException:
                # Not fetching yet (just assigned): assigning again at the offset has the same effect.
                self._client.incremental_unassign([KafkaTopicPartition(tp.topic, tp.partition)])
                self._client.incremental_assign([target])
        self._positions[tp] = offset

    @_boundary("pausing")
    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        paused = set(partitions) & self._assignment
        if not paused:
            return
        with self._gate.held(self._stuck_after_s):
            self._client.pause([KafkaTopicPartition(tp.topic, tp.partition) for tp in paused])
        self._paused |= paused
        # Records already fetched for them wait in librdkafka or here; `resume` reads them again from the position.
        self._buffer = [m for m in self._buffer if (m.topic(), m.partition()) not in paused]

    @_boundary("resuming")
    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        resumed = set(partitions) & self._paused
        if not resumed:
            return
        self._paused -= resumed
        with self._gate.held(self._stuck_after_s):
            self._client.resume([KafkaTopicPartition(tp.topic, tp.partition) for tp in resumed])
        for tp in resumed:
            if tp in self._assignment:
                # From the last record handed out, whatever librdkafka fetched (and dropped) meanwhile.
                position = self._positions.get(tp)
                self.seek(tp, 0 if position is None else position)
                self._positions[tp] = position

    def _apply_rewinds(self) -> None:
        with self._rewind_lock:
            rewind, self._rewind = self._rewind & self._assignment, set()
        if not rewind:
            return
        committed = self._committed(rewind)
        for tp in sorted(rewind):
            offset = committed.get(tp, self._starts.get(tp, OFFSET_BEGINNING))
            self.seek(tp, max(offset, 0))
            if offset == OFFSET_BEGINNING:
                self._positions[tp] = None
        logger.info("%s: reading again from the committed offsets: %s", self._what, ", ".join(map(str, rewind)))

    def _behind_for_sure(self, owned: frozenset[TopicPartition]) -> bool:
        """Not caught up, known without asking the brokers: a partition not read from yet (its first fetch will
        tell where it is), or one behind the high watermark its last fetch reported."""
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        positions = self._positions
        if any(positions.get(tp) is None for tp in owned):
            return True
        with self._gate.held(self._stuck_after_s):
            for tp in owned:
                _, high = self._client.get_watermark_offsets(KafkaTopicPartition(tp.topic, tp.partition), cached=True)
                if high >= 0 and positions[tp] < high:
                    return True
        return False

    def _committed(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of these partitions, asked through this member's own client."""
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        asked = [KafkaTopicPartition(tp.topic, tp.partition) for tp in partitions]
        try:
            with self._gate.held(self._stuck_after_s):
                found = self._client.committed(asked, timeout=REQUEST_TIMEOUT_S)
        except BackendError:
            raise
        except Exception as exc:
            raise translate(exc, f"{self._what}: reading committed offsets") from None
        return {TopicPartition(k.topic, k.partition): k.offset for k in found if k.offset >= 0}

    @_boundary("checking for the end")
    def caught_up(self) -> bool:
        self._before_reading()
        if not self._buffer:
            # Serve the client (rebalances, end events) and keep what arrived for the next poll.
            with self._gate.held(self._stuck_after_s):
                messages = self._client.consume(500, 0)
            records = [m for m in messages if m.error() is None]
            self._sort([m for m in messages if m.error() is not None])
            self._buffer.extend(records)
        if not self._joined or self._buffer:
            return False
        owned = self._assignment
        if not owned:
            return True
        if self._behind_for_sure(owned):
            return False
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

    @_boundary("committing")
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
                    metadata = self._gate.call(self._client.consumer_group_metadata, REQUEST_TIMEOUT_S)
                    self._transactions.commit(records, offsets, metadata)  # 2, 3
                return
            if records:
                self._log.outputs_producer.send(
                    records, f"{self._url}: writing the outputs of group {self._group!r}"
                )  # 2
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
            try:
                result = self._gate.call(lambda: self._client.commit(offsets=positions, asynchronous=False), timeout_s)
            except BackendError:
                raise
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

    @_boundary("leaving the group")
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
            self._gate.close()
            # Leaving the group takes one round trip; a broker that is gone (or a client stuck in a call that
            # never returns) must not hold the process.
            closer = threading.Thread(target=self._close_client, name="eventbus-kafka-close", daemon=True)
            closer.start()
            closer.join(self._session_s + 5.0)

    def _close_client(self) -> None:
        with self._gate.held(self._stuck_after_s):
            self._client.close()
