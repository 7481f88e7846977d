"""The extractor's live path: connector messages in, `extract` events out.

Its `extract` events go to `extract-live`, which the transformer and the loader
read in loops of their own: a change never waits behind a batch's instances.

A Debezium change re-extracts every instance the changed row touches (its own
row for the primary table, the instances that join to or filter on it
otherwise: `Engine.affected_keys`), through the normal SQL path, so the
resource reflects the source as it is now. An instance that is no longer
there (its row deleted, or filtered out) goes on as a deletion. A CSV file
from SFTP gives its rows as instances directly (river/csv_source.py).

Everything runs under the source's live batch, so progress and errors show in
`GET /batches/live-<connector name>`. Changes of one poll are handled
together: one query per changed table and resource, then one extraction per
resource.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import orjson

from adapters import logs, metrics
from adapters.kafka import EventTooLarge, Message, Output
from adapters.store import CanceledBatches, FhirStore, InstanceError
from river import events
from river.csv_source import FileError, RowError, csv_records, csv_refusal, resources_reading_file
from river.engine import Engine, unreadable_message
from river.errors import InvalidMapping, SourceError, SourceUnavailable, UnknownResource
from river.identity import key_text
from river.live import CSV, BadChange, LiveSource, RowChange, parse_change

log = logging.getLogger("river")
# What makes one resource unable to follow a change (the others go on); an
# unavailable source is not among them: the loop waits and retries.
_RESOURCE_PROBLEMS = (UnknownResource, InvalidMapping, SourceError)


class LiveFollower:
    """Handles the messages of the live sources' topics."""

    def __init__(self, engine: Engine, store: FhirStore, sources: list[LiveSource]) -> None:
        self.engine = engine
        self.store = store
        self.sources = sources
        self.by_topic = {topic: source for source in sources for topic in source.topics}
        self.canceled = CanceledBatches(store)
        self.changed_at: float | None = None  # the poll's earliest change (Kafka's time)
        self.read_at: float | None = None  # when the instances being sent were read

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.by_topic)

    def start(self) -> None:
        """Make each source's live batch, and say what will not be followed."""
        for source in self.sources:
            self.store.create_batch(source.batch_id, source.resource_ids, live=True)
            for warning in source.warnings:
                log.warning("%s", warning)
            if source.kind == CSV:
                for resource_id in source.resource_ids:
                    refusal = csv_refusal(self.engine.plan(resource_id))
                    if refusal:
                        log.info("connector %s: %s", source.name, refusal)
            log.info(
                "following connector %s (%s, %d resource(s)) under batch %s",
                source.name,
                source.kind,
                len(source.resource_ids),
                source.batch_id,
            )

    def handle(self, messages: list[Message], out: Output) -> None:
        # The earliest change of the poll stands for all (the latency is not understated).
        stamps = [message.timestamp for message in messages if message.timestamp]
        self.changed_at = min(stamps) if stamps else None
        changes: dict[str, list[RowChange]] = defaultdict(list)
        for message in messages:
            source = self.by_topic[message.topic]
            if self.canceled(source.batch_id):
                continue
            if source.kind == CSV:
                with logs.about(source.batch_id):
                    self._file(source, message, out)
                continue
            try:
                change = parse_change(message.value)
            except BadChange as error:
                # Its position stands for the primary key: each bad message is its own error.
                where = f"topic {message.topic}, partition {message.partition}"
                position = f"{message.topic}:{message.partition}:{message.offset}"
                self._error(
                    out, source, None, position, f"{where}, offset {message.offset}: {error}"
                )
                continue
            if change is None:
                continue  # the tombstone after a delete: the delete itself did the work
            if change.op == "t":
                log.warning(
                    "table %s.%s was truncated: run a batch to follow it (a truncate names no row)",
                    change.owner,
                    change.table,
                )
                continue
            changes[source.name].append(change)
        for source in self.sources:
            if changes.get(source.name):
                with logs.about(source.batch_id):
                    log.debug("connector %s: %d change(s)", source.name, len(changes[source.name]))
                    self._changes(source, changes[source.name], out)

    # --- database changes -----------------------------------------------------------------
    def _changes(self, source: LiveSource, changes: list[RowChange], out: Output) -> None:
        rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for change in changes:
            rows[(change.owner, change.table)].extend(change.rows)
        keys: dict[str, dict[str, Any]] = defaultdict(dict)  # resource -> key text -> key
        failed: set[str] = set()
        for (owner, table), table_rows in rows.items():
            for resource_id in self.engine.resources_reading(owner, table):
                if resource_id not in source.resource_ids or resource_id in failed:
                    continue
                try:
                    found = self.engine.affected_keys(resource_id, owner, table, table_rows)
                except SourceUnavailable:
                    raise
                except _RESOURCE_PROBLEMS as error:
                    failed.add(resource_id)
                    self._error(out, source, resource_id, None, str(error))
                    continue
                keys[resource_id].update((key_text(k), k) for k in found)
        for resource_id, wanted in keys.items():
            if resource_id not in failed and wanted:
                self._extract(source, resource_id, wanted, out)

    def _extract(
        self, source: LiveSource, resource_id: str, wanted: dict[str, Any], out: Output
    ) -> None:
        plan = self.engine.plan(resource_id)
        sent = 0
        self.read_at = time.time()  # before the query: its snapshot is no older
        try:
            for record in self.engine.records(resource_id, list(wanted.values())):
                wanted.pop(key_text(record.primary_key_value), None)
                sent += 1
                if record.unreadable:  # counted, and failed: the batch's sums stay exact
                    key = record.primary_key_value
                    self._error(out, source, resource_id, key, unreadable_message(record))
                    continue
                self._send(
                    out,
                    source,
                    plan.resource_type,
                    resource_id,
                    record.primary_key_value,
                    record.columns,
                )
        except SourceUnavailable:
            raise
        except _RESOURCE_PROBLEMS as error:
            self._error(out, source, resource_id, None, str(error))
            return
        log.debug(
            "connector %s, resource %s: %d instance(s) extracted again, %d gone",
            source.name,
            resource_id,
            sent,
            len(wanted),
        )
        for key in wanted.values():  # no row (after filters) any more: the resource goes
            self._send(out, source, plan.resource_type, resource_id, key, {}, deleted=True)
            sent += 1
        out.flush()
        self.store.add_extracted(source.batch_id, resource_id, sent)
        metrics.EXTRACTED.labels(resource_id).inc(sent)

    # --- CSV files ------------------------------------------------------------------------
    def _file(self, source: LiveSource, message: Message, out: Output) -> None:
        file_name = message.key.decode(errors="replace") if message.key else "(no name)"
        rows = _csv_rows(message.value)
        if rows is None:
            self._error(
                out,
                source,
                None,
                file_name,
                f"file {file_name}: the message is not the rows of a CSV file",
            )
            return
        plans = resources_reading_file(
            file_name, (self.engine.plan(r) for r in source.resource_ids)
        )
        if not plans:
            self._error(
                out,
                source,
                None,
                file_name,
                f"file {file_name}: no mapping resource of connector {source.name} has"
                f" {file_name.rsplit('.', 1)[0]} as its primary table",
            )
            return
        for plan in plans:
            sent = 0
            self.read_at = time.time()
            try:
                for item in csv_records(plan, file_name, rows):
                    if isinstance(item, RowError):
                        self._error(
                            out,
                            source,
                            plan.resource_id,
                            f"{file_name}, row {item.row}",
                            item.message,
                        )
                        continue
                    self._send(
                        out,
                        source,
                        plan.resource_type,
                        plan.resource_id,
                        item.primary_key_value,
                        item.columns,
                    )
                    sent += 1
            except FileError as error:
                self._error(out, source, plan.resource_id, file_name, str(error))
            out.flush()
            self.store.add_extracted(source.batch_id, plan.resource_id, sent)
            metrics.EXTRACTED.labels(plan.resource_id).inc(sent)
            log.info("file %s: %d instance(s) of resource %s", file_name, sent, plan.resource_id)

    # --- output ---------------------------------------------------------------------------
    def _send(
        self,
        out: Output,
        source: LiveSource,
        resource_type: str,
        resource_id: str,
        key: Any,
        columns: dict[str, list[Any]],
        deleted: bool = False,
    ) -> None:
        """An instance's extract event; one over the size limit is a failed instance."""
        try:
            out.send(
                events.EXTRACT_LIVE,
                events.instance_key(resource_id, key),
                events.ExtractEvent(
                    source.batch_id,
                    resource_id,
                    resource_type,
                    key,
                    columns,
                    deleted,
                    changed_at=self.changed_at,
                    read_at=self.read_at,
                ),
            )
        except EventTooLarge as error:
            self._error(out, source, resource_id, key, f"cannot send the instance: {error}")

    def _error(
        self,
        out: Output,
        source: LiveSource,
        resource_id: str | None,
        key: Any,
        message: str,
    ) -> None:
        log.warning("connector %s: %s", source.name, message)
        error = InstanceError(source.batch_id, resource_id, key, "extract", message)
        self.store.record_errors([error])
        out.send(
            events.ERRORS,
            events.instance_key(resource_id or source.name, key if key is not None else ""),
            error,
        )


def _csv_rows(value: bytes | None) -> list[list[Any]] | None:
    """The rows Camel's CSV unmarshalling sends (a JSON array of arrays), or None."""
    try:
        rows = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        return None
    return rows
