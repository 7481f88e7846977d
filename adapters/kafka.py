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

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from adapters import metrics
from adapters.store import StoreUnavailable
from river import events
from river.errors import RiverError, SourceUnavailable
from river.settings import Settings, check_kafka_security


class KafkaUnavailable(RiverError):
    """Kafka did not acknowledge in time."""


class KafkaRefused(KafkaUnavailable):
    """Kafka refused our credentials (KAFKA_SASL_*, KAFKA_SSL_*): a setting to fix, not
    an outage. The API answers 503 with the sentence; a service stops with it (exit
    status 1) rather than retry forever."""


class EventTooLarge(RiverError):
    """An event larger than KAFKA_MESSAGE_MAX_BYTES: its instance fails, named; it is
    never retried (it would be as large the next time)."""


# Room for the record batch's own headers above the largest event, so that an event
# of exactly the limit still fits in what the broker and the topics accept.
FRAMING = 64 * 1024


def max_message_bytes(settings: Settings) -> int:
    """What the broker and every topic must accept (infra and Compose set the same)."""
    return settings.kafka_message_max_bytes + FRAMING


KAFKA_LOG = logging.getLogger("river.kafka")


def kafka_config(settings: Settings, **config: Any) -> dict[str, Any]:
    """The configuration every Kafka client of FHIR River starts from (producers,
    consumers, admin clients of the services, the API and the tests' helpers): where
    Kafka is and how to talk to it (KAFKA_SECURITY_PROTOCOL, SASL, TLS), then `config`.

    The SASL password is in it (librdkafka needs it): never log the result."""
    check_kafka_security(settings)
    protocol = settings.kafka_security_protocol.upper()
    found: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": protocol,
        # librdkafka's own lines through Python's logging (LOG_FORMAT=json's lines
        # too), rather than raw on stderr.
        "logger": KAFKA_LOG,
    }
    if protocol.startswith("SASL_"):
        found["sasl.mechanism"] = settings.kafka_sasl_mechanism.upper()
        found["sasl.username"] = settings.kafka_sasl_username
        found["sasl.password"] = settings.kafka_sasl_password
    if protocol in ("SSL", "SASL_SSL"):
        for key, value in (
            ("ssl.ca.location", settings.kafka_ssl_ca_location),
            ("ssl.certificate.location", settings.kafka_ssl_certificate_location),
            ("ssl.key.location", settings.kafka_ssl_key_location),
            ("ssl.key.password", settings.kafka_ssl_key_password),
        ):
            if value:
                found[key] = value
    found.update(config)
    return found


def refused_credentials(settings: Settings, error: KafkaError) -> str | None:
    """The sentence for an error that says Kafka refused our credentials; None for any
    other error (those pass: Kafka down, a broker restarting)."""
    if error.code() != KafkaError._AUTHENTICATION:
        return None
    if settings.kafka_security_protocol.upper().startswith("SASL_"):
        who = (
            f"the credentials of KAFKA_SASL_USERNAME={settings.kafka_sasl_username}"
            f" ({settings.kafka_sasl_mechanism.upper()})"
        )
        fix = "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    else:
        who = f"the connection ({settings.kafka_security_protocol.upper()})"
        fix = "check KAFKA_SECURITY_PROTOCOL and the KAFKA_SSL_* settings"
    return f"Kafka at {settings.kafka_bootstrap_servers} refused {who}: {error.str()}; {fix}"


class Refusals:
    """A client's `error_cb`: keeps the sentence of Kafka refusing our credentials
    (librdkafka retries them forever, and only says so through this callback); any
    other error goes to `then`, when given."""

    def __init__(self, settings: Settings, then: Callable[[KafkaError], Any] | None = None):
        self.settings = settings
        self.then = then
        self.sentence: str | None = None

    def __call__(self, error: KafkaError) -> None:
        sentence = refused_credentials(self.settings, error)
        if sentence is not None:
            self.sentence = sentence
        elif self.then is not None:
            self.then(error)

    def check(self) -> None:
        """KafkaRefused if Kafka refused our credentials since this client was made."""
        if self.sentence is not None:
            raise KafkaRefused(self.sentence)


def topic_name(settings: Settings, topic: str) -> str:
    return f"{settings.kafka_topic_prefix}{topic}"


def ensure_topics(settings: Settings, names: list[str], partitions: int) -> None:
    """Create the topics that do not exist yet (a connector's topic exists only after
    its first record; a consumer subscribing before that would see nothing)."""
    if not names:
        return
    refusals = Refusals(settings)
    admin = AdminClient(kafka_config(settings, error_cb=refusals))
    limit = {"max.message.bytes": str(max_message_bytes(settings))}
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=limit)
        for name in names
    ]
    for name, future in admin.create_topics(new, operation_timeout=30).items():
        try:
            future.result(30)
        except KafkaException as error:
            refusals.check()
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailable(f"cannot create topic {name}: {error}") from None
    try:
        wait_for_leaders(admin, names)
    except KafkaUnavailable:
        refusals.check()
        raise


def wait_for_leaders(admin: AdminClient, names: list[str], timeout: float = 30) -> None:
    """Until every partition of `names` has a leader. A consumer that subscribes before
    a new topic has leaders takes it as missing and looks again only at its next
    metadata refresh (minutes); a watermark asked meanwhile fails (NOT_LEADER)."""
    deadline = time.monotonic() + timeout
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
            raise KafkaUnavailable(
                f"topics {', '.join(missing)} have no leader after {timeout:g} s"
            )
        time.sleep(0.2)


def group_name(settings: Settings, service: str) -> str:
    """The consumer group of a service: its copies share its topics' partitions."""
    return f"{settings.kafka_topic_prefix}fhir-river-{service}"


def group_members(admin: AdminClient, groups: list[str], timeout: float) -> dict[str, int]:
    """group -> how many members it has now. A member is a live process: Kafka drops
    one whose heartbeats stop for the session timeout (SESSION_TIMEOUT_MS)."""
    found: dict[str, int] = {}
    futures = admin.describe_consumer_groups(groups, request_timeout=timeout)
    for group, future in futures.items():
        try:
            found[group] = len(future.result(timeout).members)
        except KafkaException as error:
            if error.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                found[group] = 0
                continue
            raise KafkaUnavailable(f"cannot describe consumer group {group}: {error}") from None
    return found


class EventProducer:
    """Produces events; `flush` waits until Kafka acknowledged every one."""

    def __init__(self, settings: Settings, **config: Any) -> None:
        self.settings = settings
        self._failures: list[str] = []
        # Kafka refusing our credentials fails flush() at once, with the reason.
        self.refusals = Refusals(settings, config.pop("error_cb", None))
        self._producer = Producer(
            kafka_config(
                settings,
                **{
                    "acks": "all",
                    # Every producer here flushes when its work is done (a service at the
                    # end of each poll), which sends at once: until then, fill whole
                    # batches (fewer, larger requests; fewer wake-ups of librdkafka's thread).
                    "linger.ms": 100,
                    "enable.idempotence": True,
                    "compression.type": "lz4",
                    "message.max.bytes": max_message_bytes(settings),
                    # A delivery report per message costs a Python call each; flush() waits
                    # for every acknowledgement all the same, and failures are still reported.
                    "delivery.report.only.error": True,
                    "error_cb": self.refusals,
                    **config,
                },
            )
        )

    def send(self, topic: str, key: bytes | None, event: events.Event) -> None:
        self.send_raw(topic, key, events.encode(event))

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        name = topic_name(self.settings, topic)
        size = len(value) + (len(key) if key else 0)
        if size > self.settings.kafka_message_max_bytes:
            raise EventTooLarge(
                f"its {topic} event is {size:,} bytes, over the limit of"
                f" {self.settings.kafka_message_max_bytes:,} bytes (KAFKA_MESSAGE_MAX_BYTES)"
            )
        while True:
            try:
                self._producer.produce(name, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let deliveries drain
            except KafkaException as error:
                if error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    raise EventTooLarge(f"its {topic} event is too large: {error}") from None
                raise KafkaUnavailable(f"cannot produce to topic {name}: {error}") from None

    def flush(self, timeout: float = 30.0) -> None:
        self.refusals.check()
        remaining = self._flush(timeout)
        if remaining:
            raise KafkaUnavailable(
                f"{remaining} message(s) not acknowledged by Kafka within {timeout:g} s"
            )
        if self._failures:
            failures, self._failures = self._failures, []
            raise KafkaUnavailable(f"Kafka refused {len(failures)} message(s): {failures[0]}")

    def _flush(self, timeout: float) -> int:
        """Flush, a second at a time: Kafka refusing our credentials ends it at once."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            self.refusals.check()
            if not remaining or time.monotonic() >= deadline:
                return remaining

    def poll(self) -> None:
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failures.append(str(error))


# --- the service loop ---------------------------------------------------------------

TRANSIENT = (KafkaUnavailable, StoreUnavailable, SourceUnavailable)
SESSION_TIMEOUT_MS = 10_000
log = logging.getLogger("river")


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to make, once per message
class Message:
    """A consumed message; `topic` is the logical topic name, without prefix."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # When Kafka took the message (seconds since the epoch; None: unknown).
    timestamp: float | None = None


class Output:
    """Where a handler sends what it produces. The loop flushes it (waits for
    Kafka's acknowledgements) before committing the consumed offsets; a handler
    that produces a lot may flush on its way."""

    def __init__(
        self, producer: EventProducer, stopping: Callable[[], bool], service: str = ""
    ) -> None:
        self._producer = producer
        self.stopping = stopping  # True once SIGTERM came: long handlers give up
        self.service = service
        self.sent = 0
        self._counts: dict[str, int] = {}  # topic -> sent since the last flush

    def send(self, topic: str, key: bytes | None, event: events.Event) -> None:
        self._producer.send(topic, key, event)
        self.sent += 1
        self._counts[topic] = self._counts.get(topic, 0) + 1

    def flush(self) -> None:
        self._producer.flush()
        # Counted once Kafka has them (fhir_river_messages_produced_total).
        for topic, count in self._counts.items():
            metrics.PRODUCED.labels(self.service, topic).inc(count)
        self._counts.clear()


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


LIVE_LOOP = "-live"  # a service's loop of live changes: <service>-live


@dataclass
class ServiceConfig:
    # The loop: extractor, transformer, loader, or a service's live loop (loader-live);
    # its consumer group is fhir-river-<name>.
    name: str
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
    # So many messages given up in a row mean the service, not the messages, is broken.
    max_failures: int = 100

    @property
    def service(self) -> str:
        """The process the loop runs in (loader for loader-live): the name a user
        starts, and whose settings a refusal is about."""
        return self.name.removesuffix(LIVE_LOOP)


class Stopped(SystemExit):
    """A loop stops with exit status 1 for `reason`, one sentence: the last line of
    its process's log (said once every loop of the process has ended)."""

    def __init__(self, reason: str) -> None:
        super().__init__(1)
        self.reason = reason


class TooManyFailures(Stopped):
    """A service gave up on `max_failures` messages in a row: something is wrong
    with the service or its settings, not with the messages. It stops with exit
    status 1 (said in the log, no trace) rather than draining its topic into
    `errors`, as arroyo's dead-letter limit does."""


def run_services(settings: Settings, loops: list[tuple[ServiceConfig, Handler]]) -> None:
    """Several loops in one process, each in a thread with a consumer group of its
    own, so that one's long work never delays another's messages (the extractor:
    live changes beside a batch's extraction). SIGTERM stops them all; one that
    stops by itself (TooManyFailures) stops the others, and the process exits as it."""
    stop = _StopFlag()
    ended: list[BaseException] = []

    def run(config: ServiceConfig, handle: Handler) -> None:
        try:
            run_service(settings, config, handle, stop, alone=False)
        except BaseException as error:  # noqa: BLE001 (handed to the main thread)
            if not isinstance(error, SystemExit):
                log.exception("%s stopped on an error", config.name)
            ended.append(error)
            stop.set()

    threads = [
        threading.Thread(target=run, args=loop, name=loop[0].name, daemon=True) for loop in loops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # a short join: signals reach the main thread meanwhile
    if ended:
        if isinstance(ended[0], Stopped):
            log.error("%s", ended[0].reason)  # after the other loops' own last lines
        raise ended[0] if isinstance(ended[0], SystemExit) else SystemExit(1)


def run_service(
    settings: Settings,
    config: ServiceConfig,
    handle: Handler,
    stop: _StopFlag | None = None,
    alone: bool = True,
) -> None:
    """Consume, hand messages to `handle`, produce, commit; until SIGTERM or SIGINT.

    Offsets are committed only after everything the handler produced was
    acknowledged (at least once). A transient failure (Kafka, store or source
    unavailable) retries the same messages after a pause, without committing,
    with the partitions paused meanwhile, so that the consumer keeps polling and
    a long outage never gets it evicted from its group. Anything else a handler
    raises sends the messages to the `errors` topic with the reason and commits
    them: a bad message never blocks a partition. After `max_failures` such
    messages in a row, the service stops with exit status 1 (TooManyFailures).
    """
    try:
        _run_service(settings, config, handle, stop or _StopFlag())
    except KafkaRefused as error:  # a setting to fix: the last line of the log says which
        stopped: Stopped = Stopped(f"{config.service} stops: {error}")
    except Stopped as error:
        stopped = error
    else:
        return
    if alone:  # else run_services says it, once its other loops have ended
        log.error("%s", stopped.reason)
    raise stopped from None


def _run_service(
    settings: Settings, config: ServiceConfig, handle: Handler, stop: _StopFlag
) -> None:
    producer = EventProducer(settings)
    refusals = Refusals(settings)
    names = {topic_name(settings, topic): topic for topic in config.topics}
    names.update({topic: topic for topic in config.external_topics})
    consumer = Consumer(
        kafka_config(
            settings,
            **{
                "error_cb": refusals,
                # The consumer lag per partition (fhir_river_consumer_lag_messages),
                # from librdkafka's own statistics: no request of its own.
                "statistics.interval.ms": 5000,
                "stats_cb": metrics.lag_reporter(config.name, names),
                "group.id": group_name(settings, config.name),
                # A process killed leaves its group after this long without heartbeats:
                # its partitions go to its copies, and GET /health names it as down.
                "session.timeout.ms": SESSION_TIMEOUT_MS,
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
                # One event may be as large as KAFKA_MESSAGE_MAX_BYTES.
                "fetch.max.bytes": max(52_428_800, max_message_bytes(settings)),
                **config.consumer,
            },
        )
    )
    consumer.subscribe(list(names))
    loop = _Loop(config, handle, Output(producer, stop.is_set, config.name), consumer, stop)
    log.info("%s consuming %s", config.name, ", ".join(names))
    poll_seconds = metrics.POLL_SECONDS.labels(config.name)
    commit_seconds = metrics.PHASE_SECONDS.labels(config.name, "commit")
    try:
        while not stop.is_set():
            raw = consumer.consume(config.max_batch, config.max_wait)
            refusals.check()  # Kafka refused our credentials: no use going on
            messages = [
                _message(names, message) for message in raw if not _is_error(config, message)
            ]
            if not messages:
                continue
            started = time.perf_counter()
            _count_consumed(config.name, messages)
            if not loop.process(messages):
                break  # stopped while retrying: nothing committed, the messages come back
            committing = time.perf_counter()
            _commit(consumer, raw)
            done = time.perf_counter()
            commit_seconds.observe(done - committing)
            poll_seconds.observe(done - started)
            if loop.failures_in_a_row >= config.max_failures:
                raise TooManyFailures(
                    f"{config.name} could not process {loop.failures_in_a_row} messages in a"
                    " row: stopping rather than sending its whole topic to errors (the reasons"
                    " are above)"
                )
    finally:
        consumer.close()
        try:
            if refusals.sentence is None:
                producer.flush(10)
        except KafkaRefused:
            pass  # said once, by run_service
        except KafkaUnavailable as error:
            log.warning("%s: %s", config.name, error)
        log.info("%s stopped", config.name)


def _is_error(config: ServiceConfig, message: Any) -> bool:
    if message.error() is None:
        return False
    log.warning("%s: %s", config.name, message.error())
    return True


def _count_consumed(service: str, messages: list[Message]) -> None:
    counts: dict[str, int] = {}
    for message in messages:
        counts[message.topic] = counts.get(message.topic, 0) + 1
    for topic, count in counts.items():
        metrics.CONSUMED.labels(service, topic).inc(count)


def _message(names: dict[str, str], message: Any) -> Message:
    kind, stamp = message.timestamp()
    return Message(
        names.get(message.topic(), message.topic()),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        stamp / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and stamp > 0 else None,
    )


class _Loop:
    """One poll's processing: the handler, its retries, and what it gives up on."""

    def __init__(
        self,
        config: ServiceConfig,
        handle: Handler,
        output: Output,
        consumer: Consumer,
        stop: _StopFlag,
    ) -> None:
        self.config = config
        self.handle = handle
        self.output = output
        self.consumer = consumer
        self.stop = stop
        self.failures_in_a_row = 0

    def process(self, messages: list[Message], handle: Handler | None = None) -> bool:
        """Run the handler until it succeeds; False if stopped before it did.

        A poll the handler fails on for another reason than a transient one is run
        again one message at a time, so that one message nobody can process (a
        resource the store refuses, a bug) fails alone: it goes to `errors`, and the
        others are processed. What the failed attempt already produced may go twice:
        downstream, ids and upserts make a replay harmless.
        """
        name = self.config.name
        pause = 0.5
        while True:
            try:
                started = time.perf_counter()
                (handle or self.handle)(messages, self.output)
                handled = time.perf_counter()
                self.output.flush()
                metrics.PHASE_SECONDS.labels(name, "handle").observe(handled - started)
                metrics.PHASE_SECONDS.labels(name, "flush").observe(time.perf_counter() - handled)
                if handle is None:
                    self.failures_in_a_row = 0
                else:
                    metrics.GIVE_UPS.labels(name).inc(len(messages))
                return True
            except Interrupted:
                return False
            except KafkaRefused:
                raise  # a setting to fix: run_service stops, saying so
            except TRANSIENT as error:
                if self.stop.is_set():
                    return False
                log.warning("%s: %s; retrying in %.1f s", name, error, pause)
                metrics.RETRIES.labels(name).inc()
                self.wait(pause)
                pause = min(pause * 2, 10.0)
            except Exception as error:  # a bug or a message nobody can process
                if handle is not None:
                    raise  # recording the failure failed: no way to say it
                if len(messages) > 1:
                    log.warning(
                        "%s could not process %d message(s) (%s: %s): one at a time now",
                        *(name, len(messages), type(error).__name__, error),
                    )
                    return all(self.process([message]) for message in messages)
                if isinstance(error, RiverError):  # a sentence for the user (a refused resource)
                    reason = f"{name} failed: {error}"
                    log.warning("%s", reason)
                else:  # a bug: its trace in the log, its type in the error
                    reason = f"{name} failed: {type(error).__name__}: {error}"
                    log.exception("%s could not process a message", name)
                self.failures_in_a_row += 1
                return self.process(messages, _give_up(self.config, reason))

    def wait(self, seconds: float) -> None:
        """Wait out a transient failure while polling, partitions paused: the group
        sees a live member, and nothing new is fetched meanwhile."""
        paused = list(self.consumer.assignment())
        self.consumer.pause(paused)
        try:
            deadline = time.monotonic() + seconds
            while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
                # Partitions assigned meanwhile are not paused: what they gave is put
                # back, so that nothing is skipped.
                for message in self.consumer.consume(self.config.max_batch, min(left, 1.0)):
                    if message.error() is None:
                        self.consumer.seek(
                            TopicPartition(message.topic(), message.partition(), message.offset())
                        )
                        where = TopicPartition(message.topic(), message.partition())
                        self.consumer.pause([where])
                        paused.append(where)
        finally:
            # Every partition paused here, assigned or not now: a pause may outlive a
            # rebalance (a group lost in a Kafka outage gives the same partitions back).
            self.consumer.resume(paused + list(self.consumer.assignment()))


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

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)


class Interrupted(Exception):  # noqa: N818 (it is not an error: a stop came)
    """Raised by a long handler that gave up because SIGTERM came: the loop
    commits nothing, so the message comes back to whoever consumes it next."""
