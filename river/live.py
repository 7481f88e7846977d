"""Live sources: which Kafka Connect connector feeds which mapping resources, and
what its messages mean.

    sources = live_sources(settings.live_sources, engine.mappings)
    for source in sources:
        source.topics        # topic -> (owner, table) for CDC; topic -> None for CSV
    change = parse_change(message.value)   # a Debezium change, None for a tombstone

LIVE_SOURCES lists connector files (or folders of them), comma-separated, each
optionally followed by `=` and the mapping file, folder or Pyrog source name it
feeds (default: every loaded mapping):

    LIVE_SOURCES=kafka_connect_connectors/sources/mimic-postgres-cdc.json=examples/mappings

A source whose mapping MAPPINGS does not load (a user's own MAPPINGS with the
example's LIVE_SOURCES) is left out with one warning naming the connector and the
mapping; a connector file that is missing or that FHIR River cannot follow is
still an error.

Two kinds of connector are followed: Debezium's PostgreSQL connector (a change
of a row re-extracts the instances it touches, river/engine.py) and Camel's SFTP
source with CSV unmarshalling (each row of a file is an instance,
river/csv_source.py). Each source's work runs under one live batch, visible in
`GET /batches` like any other.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from river.batches import live_batch_id
from river.connectors import ConnectorError, ConnectorFile, load_file
from river.errors import ConfigurationError, RiverError
from river.mapping import Mapping, MappingSet

log = logging.getLogger("river")

CDC, CSV = "cdc", "csv"
DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"
CAMEL_SOURCE = "org.apache.camel.kafkaconnector.CamelSourceConnector"


@dataclass(frozen=True)
class LiveSource:
    """A connector and the mapping resources its messages feed."""

    name: str  # the connector's name
    kind: str  # CDC or CSV
    resource_ids: tuple[str, ...]
    # CDC: one topic per table the resources read -> (owner, table); CSV: its topic -> None.
    topics: dict[str, tuple[str, str] | None]
    # What a user should know: tables the resources read that the connector does not capture.
    warnings: tuple[str, ...] = field(default=())
    # CDC: the replication slot the connector reads (Debezium's default: debezium).
    slot: str | None = None

    @property
    def batch_id(self) -> str:
        return live_batch_id(self.name)


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row inserted (op c), updated (u), deleted (d) or read by a snapshot (r)."""

    owner: str
    table: str
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The old and the new version of the row, as far as they exist."""
        return [row for row in (self.before, self.after) if row is not None]


class BadChange(RiverError):
    """A message on a CDC topic that is not a Debezium change event."""


def live_sources(setting: str, mappings: MappingSet) -> list[LiveSource]:
    """The sources LIVE_SOURCES names; ConfigurationError naming the faulty entry.

    A source whose mapping is not loaded is skipped with a warning (logged), so that
    pointing MAPPINGS at one's own mappings does not stop the extractor."""
    sources: list[LiveSource] = []
    names: list[str] = []
    for entry in (part.strip() for part in setting.split(",")):
        if not entry:
            continue
        location, _, mapping_name = entry.partition("=")
        connectors = [
            _load(path, entry) for path in _connector_paths(Path(location.strip()), entry)
        ]
        names += [connector.name for connector in connectors]
        name = mapping_name.strip()
        selected = _mappings_named(name, mappings)
        for connector in connectors:
            # Checked even when skipped: a connector FHIR River cannot follow is an error.
            source = _source(connector, selected)
            if selected or not name:
                sources.append(source)
            else:
                log.warning("%s", _skipped(connector, name, mappings))
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigurationError(f"setting LIVE_SOURCES names connector {twice[0]} twice")
    return sources


def parse_change(value: bytes | None) -> RowChange | None:
    """A Debezium change event (JSON converter, with or without schemas); None for the
    tombstone that follows a delete. BadChange says what is wrong with anything else."""
    if value is None:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise BadChange(f"not JSON: {error}") from None
    if isinstance(event, dict) and "payload" in event and "schema" in event:
        event = event["payload"]  # value.converter.schemas.enable=true
    if event is None:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("source"), dict):
        raise BadChange("not a Debezium change event (no source block)")
    source, op = event["source"], event.get("op")
    if op not in ("c", "u", "d", "r", "t"):
        raise BadChange(f"unknown operation {op!r}")
    before, after = event.get("before"), event.get("after")
    if not all(row is None or isinstance(row, dict) for row in (before, after)):
        raise BadChange("before and after must be rows (objects) or null")
    owner, table = source.get("schema"), source.get("table")
    if not isinstance(owner, str) or not isinstance(table, str):
        raise BadChange("the source block names no schema and table")
    return RowChange(owner, table, op, before, after)


# --- reading the setting ------------------------------------------------------------------


def _connector_paths(location: Path, entry: str) -> list[Path]:
    if location.is_dir():
        paths = sorted(location.glob("*.json"))
        if not paths:
            raise ConfigurationError(
                f"setting LIVE_SOURCES ({entry}): no connector file (*.json) in {location}"
            )
        return paths
    if not location.is_file():
        raise ConfigurationError(
            f"setting LIVE_SOURCES ({entry}): no connector file or folder {location}"
        )
    return [location]


def _load(path: Path, entry: str) -> ConnectorFile:
    try:
        return load_file(path)
    except ConnectorError as error:
        raise ConfigurationError(f"setting LIVE_SOURCES ({entry}): {error}") from None


def _mappings_named(name: str, mappings: MappingSet) -> list[Mapping]:
    """The loaded mappings `name` designates (all of them for no name); [] for none."""
    if not name:
        return list(mappings.mappings)
    wanted = Path(name).resolve()
    return [
        mapping
        for mapping in mappings.mappings
        if name == mapping.source_name
        or wanted == Path(mapping.origin).resolve()
        or wanted in Path(mapping.origin).resolve().parents
    ]


def _skipped(connector: ConnectorFile, name: str, mappings: MappingSet) -> str:
    """The one line that says a connector is not followed, and why."""
    loaded = ", ".join(m.origin for m in mappings.mappings) or "none"
    if Path(name).exists():
        why = f"{name} is not among the mappings MAPPINGS loads ({loaded})"
    else:
        why = (
            f"{name} is no mapping file or folder, nor the source name of a loaded mapping"
            f" (MAPPINGS loads {loaded})"
        )
    return (
        f"setting LIVE_SOURCES: connector {connector.name} ({connector.path}) is not followed:"
        f" its mapping {why}; name the connector=mapping pairs to follow in LIVE_SOURCES"
    )


def _source(connector: ConnectorFile, mappings: list[Mapping]) -> LiveSource:
    config = connector.config
    resource_ids = tuple(r for mapping in mappings for r in mapping.resources)
    plans = [plan for mapping in mappings for plan in mapping.resources.values()]
    connector_class = config.get("connector.class", "")
    if connector_class == DEBEZIUM_POSTGRES:
        prefix = config.get("topic.prefix")
        if not prefix:
            raise ConfigurationError(f"connector file {connector.path}: no topic.prefix")
        tables = sorted({table for plan in plans for table in plan.tables})
        missed = [f"{o}.{t}" for o, t in tables if not _captures(config, o, t)]
        warnings = tuple(
            f"connector {connector.name} does not capture table {table}, which the mappings"
            f" read: its changes will not reach the FHIR store"
            for table in missed
        )
        topics: dict[str, tuple[str, str] | None] = {
            f"{prefix}.{owner}.{table}": (owner, table) for owner, table in tables
        }
        slot = config.get("slot.name") or "debezium"
        return LiveSource(connector.name, CDC, resource_ids, topics, warnings, slot)
    if connector_class == CAMEL_SOURCE and config.get("camel.source.unmarshal") == "csv":
        topic = config.get("topics", "")
        if not topic or "," in topic:
            raise ConfigurationError(
                f"connector file {connector.path}: a CSV source needs one topic in `topics`"
            )
        return LiveSource(connector.name, CSV, resource_ids, {topic: None})
    raise ConfigurationError(
        f"connector file {connector.path}: FHIR River follows Debezium's PostgreSQL connector"
        f" and Camel's SFTP source with camel.source.unmarshal=csv, not {connector_class or '?'}"
    )


def _captures(config: dict[str, str], owner: str, table: str) -> bool:
    """Whether Debezium's include lists (anchored regular expressions) take owner.table."""
    schemas, tables = config.get("schema.include.list"), config.get("table.include.list")
    if schemas and not any(re.fullmatch(s.strip(), owner) for s in schemas.split(",")):
        return False
    return not tables or any(re.fullmatch(t.strip(), f"{owner}.{table}") for t in tables.split(","))
