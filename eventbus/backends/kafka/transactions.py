"""Exactly-once: a consumer's outputs and its offsets committed in one Kafka transaction.

One transaction per `publish_and_commit`, in this order (the numbers appear again in the code):

1. Begin a transaction on the consumer's own transactional producer.
2. Produce the outputs into it.
3. Add the consumer's offsets to it, with the group's metadata (generation and member id), so the group
   coordinator refuses them if this member has been fenced out of the group by a rebalance.
4. Commit: outputs become visible to ``read_committed`` readers and the offsets take effect together, or
   neither does.

Any failure aborts the transaction (nothing of it is ever visible). A fatal producer error (fenced by a newer
producer with the same transactional id, or state the broker lost) discards the producer; the next transaction
starts on a fresh one, initialised again.

Transactional ids come from partitions: ``eventbus-GROUP-TOPIC-PARTITION``. A member works under the id of the
first partition it owns, and when it is given partitions it first initialises a producer under each of their
ids. Initialising aborts any transaction an earlier producer with the id left open, so when a member crashes in
the middle of a transaction, whoever is given its first partition aborts that transaction at once, instead of
``read_committed`` readers of its outputs waiting for the transaction timeout (or, on brokers that never time
transactions out, forever).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eventbus.backends.base import TopicPartition
from eventbus.backends.kafka.admin import build_client
from eventbus.backends.kafka.clients import producer_config
from eventbus.backends.kafka.config import KafkaSettings
from eventbus.backends.kafka.errors import GROUP_MOVED_ON, UNREACHABLE, describe, error_name, kafka_error_of, translate
from eventbus.backends.kafka.producer import Outgoing, produce_all
from eventbus.errors import BackendError, PartitionRevokedError

logger = logging.getLogger("eventbus.kafka")

# librdkafka's names for a transactional producer another one with the same id has fenced out.
_FENCED = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})

# How long one transactional call (init, send offsets, commit, abort) may wait for the coordinator.
_CALL_TIMEOUT_S = 30.0


def transactional_id(group: str, tp: TopicPartition) -> str:
    return f"eventbus-{group}-{tp.topic}-{tp.partition}"


class TransactionalProducer:
    """The transactional producer of one consumer. `commit` runs on the committing thread, `follow` inside
    rebalances on the polling thread; ``lock`` keeps them apart."""

    def __init__(self, settings: KafkaSettings, group: str) -> None:
        self._settings = settings
        self._group = group
        self._producer: Any = None
        # Used while the member owns no partition (it then commits no offsets, but may still publish).
        self._spare_id = f"eventbus-{group}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.transactional_id = self._spare_id
        self.lock = threading.Lock()

    @property
    def _what(self) -> str:
        return f"{self._settings.redacted_url}: transaction of {self.transactional_id!r}"

    def follow(self, owned: frozenset[TopicPartition], added: Iterable[TopicPartition]) -> None:
        """After a rebalance: fence the ids of partitions just ``added`` (aborting what a crashed owner left
        open), then work under the id of the first partition ``owned``."""
        wanted = transactional_id(self._group, min(owned)) if owned else self._spare_id
        with self.lock:
            for tp in sorted(added):
                fenced_id = transactional_id(self._group, tp)
                if fenced_id == wanted:
                    self._switch(wanted)
                    self._ready()
                elif fenced_id != self.transactional_id:
                    self._initialised(fenced_id).flush(0)
            self._switch(wanted)

    def _on_error(self, error: Any) -> None:
        if error.fatal() or error.name() not in UNREACHABLE:
            logger.warning("%s: %s", self._what, describe(error))

    def _switch(self, new_id: str) -> None:
        if new_id != self.transactional_id:
            self.transactional_id = new_id
            self._producer = None

    def _ready(self) -> Any:
        """The producer, created and registered with the transaction coordinator on first use."""
        if self._producer is None:
            self._producer = self._initialised(self.transactional_id)
        return self._producer

    def _initialised(self, transactional_id: str) -> Any:
        from confluent_kafka import KafkaException, Producer

        config = producer_config(self._settings, transactional_id=transactional_id)
        # Fatal errors surface from the transactional calls themselves; the callback keeps confluent_kafka from
        # raising them out of unrelated calls.
        config["error_cb"] = self._on_error
        producer = build_client(Producer, config, self._settings)
        try:
            # Also aborts a transaction an earlier producer with this id left open (it crashed).
            producer.init_transactions(self._timeout_s())
        except KafkaException as exc:
            raise translate(exc, f"{self._settings.redacted_url}: initialising {transactional_id!r}") from None
        return producer

    def _timeout_s(self) -> float:
        return max(_CALL_TIMEOUT_S, self._settings.broker_unavailable_timeout_s)

    def commit(self, records: Sequence[Outgoing], offsets: Mapping[TopicPartition, int], group_metadata: Any) -> None:
        """Outputs and offsets in one transaction; raises `PartitionRevokedError` when the group moved on
        (nothing was committed) and `BackendError` for other failures (nothing was committed either)."""
        with self.lock:
            self._commit_locked(records, offsets, group_metadata)

    def _commit_locked(
        self, records: Sequence[Outgoing], offsets: Mapping[TopicPartition, int], group_metadata: Any
    ) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        producer = self._ready()
        try:
            producer.begin_transaction()  # 1
            _, refused = produce_all(producer, records, None)  # 2
            if refused is not None:
                raise KafkaException(refused)
            if offsets:
                positions = [KafkaTopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
                producer.send_offsets_to_transaction(positions, group_metadata, self._timeout_s())  # 3
            self._commit(producer)  # 4
        except KafkaException as exc:
            self._recover(producer, exc)
            name = error_name(exc)
            if name in GROUP_MOVED_ON:
                raise PartitionRevokedError(f"{self._what}: the group moved on ({describe(exc)})") from None
            if name in _FENCED:
                # A newer producer took this transactional id: its partition went to another member (which
                # initialised the id), so this one starts over from the committed offsets, on a new producer.
                raise PartitionRevokedError(f"{self._what}: fenced by a newer producer ({describe(exc)})") from None
            raise translate(exc, self._what) from None

    def _commit(self, producer: Any) -> None:
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + self._timeout_s()
        while True:
            try:
                producer.commit_transaction(self._timeout_s())
                return
            except KafkaException as exc:
                error = exc.args[0]
                # Retriable: the outcome is not known yet; committing again is how to learn it.
                if not error.retriable() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _recover(self, producer: Any, exc: Exception) -> None:
        """Leave the producer ready for the next transaction, or drop it if it cannot be."""
        error = kafka_error_of(exc)
        if error is not None and error.txn_requires_abort():
            try:
                producer.abort_transaction(self._timeout_s())
                return
            except Exception as abort_error:  # any failure to abort means: start afresh
                logger.warning("%s: abort failed (%s); replacing the producer", self._what, describe(abort_error))
        elif error is not None and not error.fatal():
            # Failed before the transaction began, or a retriable commit ran out of time: try to abort anyway.
            with contextlib.suppress(Exception):  # no transaction to abort, or it cannot be: start afresh
                producer.abort_transaction(self._timeout_s())
                return
        logger.warning("%s failed (%s); the next transaction starts on a new producer", self._what, describe(exc))
        self._producer = None

    def close(self) -> None:
        with self.lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(5.0)
            except Exception as exc:
                raise BackendError(f"{self._what}: closing: {exc}") from None
