"""Kafka for the services: topic names, an event producer, and the one
consume-process-produce-commit loop every service runs (`run_service`).

    producer = EventProducer(settings)
    producer.send(events.BATCH, instance_key(resource_id, ""), BatchEvent(...))
    producer.flush()            # raises KafkaUnavailable if not acknowledged in time
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from adapters.store import StoreUnavailable
from river import events
from river.errors import RiverError, SourceUnavailable
from river.settings import Settings


class KafkaUnavailable(RiverError):
    """Kafka did not acknowledge in time."""


def topic_name(settings: Settings, topic: str) -> str:
    return f"{settings.kafka_topic_prefix}{topic}"


def ensure_topics(settings: Settings, names: list[str], partitions: int) -> None:
    """Create the topics that do not exist yet (a connector's topic exists only after
    its first record; a consumer subscribing before that would see nothing)."""
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    new = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    for name, future in admin.create_topics(new, operation_timeout=30).items():
        try:
            future.result(30)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailable(f"cannot create topic {name}: {error}") from None
    # A consumer that subscribes before a new topic has leaders takes it as missing
    # and looks again only at its next metadata refresh (minutes): wait for them.
    deadline = time.monotonic() + 30
    while True:
        topics = admin.list_topics(timeout=10).topics
        ready = [
            name
            for name in names
            if name in topics
            and topics[name].error is None
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
        ]
        if len(ready) == len(names):
            return
        if time.monotonic() > deadline:
            missing = sorted(set(names) - set(ready))
            raise KafkaUnavailable(f"topics {', '.join(missing)} have no leader after 30 s")
        time.sleep(0.2)


class EventProducer:
    """Produces events; `flush` waits until Kafka acknowledged every one."""

    def __init__(self, settings: Settings, **config: Any) -> None:
        self.settings = settings
        self._failures: list[str] = []
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "acks": "all",
                # Every producer here flushes when its work is done (a service at the end
                # of each poll), which sends at once: until then, fill whole batches
                # (fewer, larger requests; fewer wake-ups of librdkafka's thread).
                "linger.ms": 100,
                "enable.idempotence": True,
                "compression.type": "lz4",
                "message.max.bytes": 10_000_000,
                # A delivery report per message costs a Python call each; flush() waits
                # for every acknowledgement all the same, and failures are still reported.
                "delivery.report.only.error": True,
                **config,
            }
        )

    def send(self, topic: str, key: bytes | None, event: events.Event) -> None:
        self.send_raw(topic, key, events.encode(event))

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        name = topic_name(self.settings, topic)
        while True:
            try:
                self._producer.produce(name, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let deliveries drain
            except KafkaException as error:
                raise KafkaUnavailable(f"cannot produce to topic {name}: {error}") from None

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise KafkaUnavailable(
                f"{remaining} message(s) not acknowledged by Kafka within {timeout:g} s"
            )
        if self._failures:
            failures, self._failures = self._failures, []
            raise KafkaUnavailable(f"Kafka refused {len(failures)} message(s): {failures[0]}")

    def poll(self) -> None:
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failures.append(str(error))


# --- the service loop ---------------------------------------------------------------

TRANSIENT = (KafkaUnavailable, StoreUnavailable, SourceUnavailable)
log = logging.getLogger("river")


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to make, once per message
class Message:
    """A consumed message; `topic` is the logical topic name, without prefix."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Output:
    """Where a handler sends what it produces. The loop flushes it (waits for
    Kafka's acknowledgements) before committing the consumed offsets; a handler
    that produces a lot may flush on its way."""

    def __init__(self, producer: EventProducer, stopping: Callable[[], bool]) -> None:
        self._producer = producer
        self.stopping = stopping  # True once SIGTERM came: long handlers give up
        self.sent = 0

    def send(self, topic: str, key: bytes | None, event: events.Event) -> None:
        self._producer.send(topic, key, event)
        self.sent += 1

    def flush(self) -> None:
        self._producer.flush()


Handler = Callable[[list[Message], Output], None]
# What becomes of a message no handler can process, besides a note on `errors`: the
# event said there (a service may also record it, as a failed instance of its batch).
Failure = Callable[[Message, str], events.ErrorEvent]


def decoded(
    topic: str, stage: str, messages: list[Message], out: Output
) -> Iterator[tuple[Message, Any]]:
    """The events of `messages`; a message that is not one goes to `errors`, saying why."""
    for message in messages:
        try:
            event = events.decode(topic, message.value)
        except events.BadEvent as error:
            out.send(
                events.ERRORS, message.key, events.ErrorEvent(None, None, None, stage, str(error))
            )
            continue
        yield message, event


@dataclass
class ServiceConfig:
    name: str  # extractor, transformer, loader: the consumer group is fhir-river-<name>
    topics: tuple[str, ...]
    # Topics named as they are, without KAFKA_TOPIC_PREFIX: a live source's connector topics.
    external_topics: tuple[str, ...] = ()
    max_batch: int = 500
    # consume() waits for max_batch messages or this long: each stage adds at most this
    # to a live change's latency, and under load batches fill long before.
    max_wait: float = 0.05
    # A batch event may take minutes to extract: don't let the group evict us.
    max_poll_interval_ms: int = 300_000
    consumer: dict[str, Any] = field(default_factory=dict)
    # A message this service cannot process, as an error event; None: one that names
    # only where the message was (topic, partition, offset).
    failure: Failure | None = None


def run_service(settings: Settings, config: ServiceConfig, handle: Handler) -> None:
    """Consume, hand messages to `handle`, produce, commit; until SIGTERM or SIGINT.

    Offsets are committed only after everything the handler produced was
    acknowledged (at least once). A transient failure (Kafka, store or source
    unavailable) retries the same messages after a pause, without committing.
    Anything else a handler raises sends the messages to the `errors` topic
    with the reason and commits them: a bad message never blocks a partition.
    """
    stop = _StopFlag()
    producer = EventProducer(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.kafka_topic_prefix}fhir-river-{config.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.poll.interval.ms": config.max_poll_interval_ms,
            "partition.assignment.strategy": "cooperative-sticky",
            # librdkafka prefetches up to 64 MB by default: a consumer that lags
            # (the loader behind the transformer) would hold that much. 16 MB is
            # still many polls ahead.
            "queued.max.messages.kbytes": 16384,
            # A subscribed topic not there yet (a connector's) is looked for again this often.
            "topic.metadata.refresh.interval.ms": 10_000,
            **config.consumer,
        }
    )
    names = {topic_name(settings, topic): topic for topic in config.topics}
    names.update({topic: topic for topic in config.external_topics})
    consumer.subscribe(list(names))
    output = Output(producer, stop.is_set)
    log.info("%s consuming %s", config.name, ", ".join(names))
    try:
        while not stop.is_set():
            raw = consumer.consume(config.max_batch, config.max_wait)
            messages = []
            for message in raw:
                if message.error() is not None:
                    log.warning("%s: %s", config.name, message.error())
                    continue
                messages.append(
                    Message(
                        names.get(message.topic(), message.topic()),
                        message.partition(),
                        message.offset(),
                        message.key(),
                        message.value(),
                    )
                )
            if not messages:
                continue
            if not _process(config, handle, messages, output, producer, stop):
                break  # stopped while retrying: nothing committed, the messages come back
            _commit(consumer, raw)
    finally:
        consumer.close()
        try:
            producer.flush(10)
        except KafkaUnavailable as error:
            log.warning("%s: %s", config.name, error)
        log.info("%s stopped", config.name)


def _process(
    config: ServiceConfig,
    handle: Handler,
    messages: list[Message],
    output: Output,
    producer: EventProducer,
    stop: _StopFlag,
) -> bool:
    """Run the handler until it succeeds; False if stopped before it did.

    A poll the handler fails on for another reason than a transient one is run
    again one message at a time, so that one message nobody can process (a
    resource the store refuses, a bug) fails alone: it goes to `errors`, and the
    others are processed. What the failed attempt already produced may go twice:
    downstream, ids and upserts make a replay harmless.
    """
    pause = 0.5
    while True:
        try:
            handle(messages, output)
            output.flush()
            return True
        except Interrupted:
            return False
        except TRANSIENT as error:
            if stop.is_set():
                return False
            log.warning("%s: %s; retrying in %.1f s", config.name, error, pause)
            stop.wait(pause)
            pause = min(pause * 2, 10.0)
        except Exception as error:  # a bug or a message nobody can process
            if len(messages) > 1:
                log.warning(
                    "%s could not process %d message(s) (%s: %s): one at a time now",
                    *(config.name, len(messages), type(error).__name__, error),
                )
                return all(
                    _process(config, handle, [message], output, producer, stop)
                    for message in messages
                )
            if isinstance(error, RiverError):  # a sentence for the user (a refused resource)
                reason = f"{config.name} failed: {error}"
                log.warning("%s", reason)
            else:  # a bug: its trace in the log, its type in the error
                reason = f"{config.name} failed: {type(error).__name__}: {error}"
                log.exception("%s could not process a message", config.name)
            return _process(config, _give_up(config, reason), messages, output, producer, stop)


def _give_up(config: ServiceConfig, reason: str) -> Handler:
    """A handler that sends each message to `errors` as the service's `failure` says."""

    def handle(messages: list[Message], out: Output) -> None:
        for message in messages:
            error = _error_of(message, reason)
            if config.failure is not None:
                try:
                    error = config.failure(message, reason)
                except TRANSIENT:
                    raise  # retried: the failure is recorded once the store answers
                except Exception:
                    log.exception("%s could not record a failure", config.name)
            out.send(events.ERRORS, message.key, error)

    return handle


def _error_of(message: Message, reason: str) -> events.ErrorEvent:
    return events.ErrorEvent(
        batch_id=None,
        resource_id=None,
        primary_key_value=None,
        stage=message.topic,
        message=f"{reason} ({where(message)})",
    )


def where(message: Message) -> str:
    return f"partition {message.partition}, offset {message.offset}"


def _commit(consumer: Consumer, raw: list[Any]) -> None:
    positions: dict[tuple[str, int], int] = {}
    for message in raw:
        key = (message.topic(), message.partition())
        if message.offset() is not None and message.offset() >= 0:
            positions[key] = max(positions.get(key, -1), message.offset() + 1)
    if not positions:
        return
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
            asynchronous=False,
        )
    except KafkaException as error:
        # A rebalance took the partition away: its new owner replays (at least once).
        log.warning("commit refused: %s", error)


class _StopFlag:
    """Set by SIGTERM or SIGINT; the loop ends after the message batch in hand."""

    def __init__(self) -> None:
        self._event = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._set)

    def _set(self, signum: int, frame: Any) -> None:
        log.info("signal %d: finishing the messages in hand, then stopping", signum)
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)


class Interrupted(Exception):  # noqa: N818 (it is not an error: a stop came)
    """Raised by a long handler that gave up because SIGTERM came: the loop
    commits nothing, so the message comes back to whoever consumes it next."""
