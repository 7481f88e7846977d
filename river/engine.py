"""The engine: extraction, transformation and validation wired together.

What `river preview`, `river batch`, the API's preview and the services share:

    engine = Engine.from_settings(Settings.load())
    answer = engine.preview("cktlnp0f300300mmznmyqln70", ["10006"])
    for outcome in engine.run("cktlnp0f300300mmznmyqln70"):
        ...

Everything per resource (the SQL source, the bound transformer) is made once
and reused; a record's transformation never touches the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from river.concept_maps import ConceptMaps
from river.errors import ConfigurationError, InstanceError, InvalidMapping, MappingFault, RiverError
from river.identity import fhir_id
from river.mapping import MappingSet, load_mappings
from river.plan import ResourcePlan
from river.pyrog import PyrogClient
from river.scripts import ScriptRegistry
from river.settings import Settings
from river.sql import Columns, Record, SourceDatabase
from river.transform import Outcome, ResourceTransformer, timestamp
from river.validation import Validator


class ResourceValidator(Protocol):
    def validate(self, resource: dict[str, Any]) -> list[str]: ...


class Engine:
    def __init__(
        self,
        mappings: MappingSet,
        scripts: ScriptRegistry,
        concept_maps: ConceptMaps,
        validator: ResourceValidator | None = None,
        source_db_url: str = "",
        chunk_size: int = 5000,
    ) -> None:
        self.mappings = mappings
        self.scripts = scripts
        self.concept_maps = concept_maps
        self.validator = validator
        self.source_db_url = source_db_url
        self.chunk_size = chunk_size
        self._sources: dict[str, SourceDatabase] = {}
        self._transformers: dict[str, ResourceTransformer] = {}
        self._readers: dict[tuple[str, str], list[str]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, mappings: str | None = None) -> Engine:
        """An engine over the mappings the settings name (or `mappings`, a path)."""
        try:
            scripts = ScriptRegistry.default(
                settings.source_timezone, settings.custom_scripts or None
            )
        except ValueError as error:  # the time zone; a bad scripts location says so itself
            raise ConfigurationError(f"setting SOURCE_TIMEZONE: {error}") from None
        if mappings is None and settings.pyrog_api_url:
            loaded = PyrogClient.from_settings(settings).load_mappings(scripts)
        else:
            loaded = load_mappings(mappings or settings.mappings, scripts)
        return cls(
            loaded,
            scripts,
            ConceptMaps.from_settings(settings.fhir_api_url, settings.concept_maps),
            Validator(),
            settings.source_db_url,
            settings.extract_chunk_size,
        )

    # --- per resource, made once -------------------------------------------
    def plan(self, resource_id: str) -> ResourcePlan:
        return self.mappings.resource(resource_id)

    def source(self, resource_id: str) -> SourceDatabase:
        """The source database of a resource: SOURCE_DB_URL, else the mapping's credential."""
        url = self.source_db_url or self.mappings.mapping_of(resource_id).credential.url()
        key = str(url) if isinstance(url, str) else url.render_as_string(hide_password=False)
        if key not in self._sources:
            self._sources[key] = SourceDatabase(url, self.chunk_size)
        return self._sources[key]

    def transformer(self, resource_id: str) -> ResourceTransformer:
        if resource_id not in self._transformers:
            plan = self.plan(resource_id)
            try:
                self._transformers[resource_id] = ResourceTransformer(
                    plan, self.scripts, self.concept_maps
                )
            except RiverError as error:
                if isinstance(error, InvalidMapping):
                    raise
                raise InvalidMapping(
                    self.mappings.mapping_of(resource_id).origin,
                    [MappingFault(f"resource {resource_id}", str(error))],
                ) from None
        return self._transformers[resource_id]

    # --- running ---------------------------------------------------------------
    def records(
        self, resource_id: str, primary_key_values: Iterable[Any] | None = None
    ) -> Iterator[Record]:
        return self.source(resource_id).records(self.plan(resource_id), primary_key_values)

    def count(self, resource_id: str, primary_key_values: Iterable[Any] | None = None) -> int:
        return self.source(resource_id).count(self.plan(resource_id), primary_key_values)

    def first_keys(self, resource_id: str, limit: int = 20) -> list[Any]:
        return self.source(resource_id).first_keys(self.plan(resource_id), limit)

    def read_keys(self, resource_id: str, primary_key_values: Iterable[Any]) -> list[Any]:
        """Primary key values read strictly as the key column's type; InvalidValue
        names the first that cannot be (a user's typo must not select another row)."""
        return self.source(resource_id).read_keys(self.plan(resource_id), primary_key_values)

    def resources_reading(self, owner: str, table: str) -> list[str]:
        """The resources a change in owner.table may affect: it is their primary
        table, or their joins, filters or conditions reach it (the live path)."""
        if (owner, table) not in self._readers:  # asked at each live poll: answered once
            self._readers[(owner, table)] = [
                plan.resource_id for plan in self.mappings if (owner, table) in plan.tables
            ]
        return self._readers[(owner, table)]

    def affected_keys(
        self, resource_id: str, owner: str, table: str, rows: Iterable[dict[str, Any]]
    ) -> list[Any]:
        """Primary key values of the instances that changed `rows` (the old and the
        new version of a row of owner.table) touch, to extract them again."""
        plan = self.plan(resource_id)
        rows = list(rows)
        keys: set[Any] = set()
        primary = plan.primary_table
        if (primary.owner, primary.table) == (owner, table):
            column = plan.primary_key.column.column
            keys.update(row[column] for row in rows if row.get(column) is not None)
        keys.update(self.source(resource_id).keys_reaching(plan, owner, table, rows))
        return sorted(keys, key=str)

    def fhir_id(self, resource_id: str, primary_key_value: Any) -> str:
        """The id of an instance's resource, without transforming it (a deleted row)."""
        return fhir_id(self.plan(resource_id).logical_reference, primary_key_value)

    def transform(self, resource_id: str, columns: Columns, now: str | None = None) -> Outcome:
        """Transform one record and validate the resource: an invalid one is an error."""
        outcome = self.transformer(resource_id).transform(columns, now)
        if outcome.resource is not None and self.validator is not None:
            problems = self.validator.validate(outcome.resource)
            if problems:
                outcome.error = "invalid FHIR: " + "; ".join(problems)
                outcome.resource = None
        return outcome

    def run(
        self,
        resource_id: str,
        primary_key_values: Iterable[Any] | None = None,
        on_record: Callable[[Record], None] | None = None,
    ) -> Iterator[Outcome]:
        """Every instance of a resource, extracted, transformed and validated."""
        self.transformer(resource_id)  # an invalid mapping fails before any query
        now = timestamp()
        for n, record in enumerate(self.records(resource_id, primary_key_values)):
            if on_record is not None:
                on_record(record)
            if n % 1000 == 999:
                now = timestamp()
            if record.unreadable:
                yield unreadable_outcome(resource_id, record)
            else:
                yield self.transform(resource_id, record.columns, now)

    def preview(self, resource_id: str, primary_key_values: list[Any]) -> dict[str, list[Any]]:
        """`{"instances", "errors", "warnings", "records"}` for a few rows: nothing is
        written. `records` are the source rows as the mapping read them (each column
        label with one value per joined row), per primary key value."""
        instances: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        seen: set[str] = set()

        def keep(record: Record) -> None:
            records.append(
                {"primary_key_value": record.primary_key_value, "columns": record.columns}
            )

        for outcome in self.run(resource_id, primary_key_values, on_record=keep):
            seen.add(str(outcome.primary_key_value))
            for warning in outcome.warnings:
                warnings.append(_report(outcome, warning))
            if outcome.resource is not None:
                instances.append(outcome.resource)
            else:
                errors.append(_report(outcome, outcome.error or ""))
        for value in primary_key_values:
            if str(value) not in seen:
                errors.append(
                    {
                        "resource_id": resource_id,
                        "primary_key_value": value,
                        "message": "no row has this primary key value (after filters)",
                    }
                )
        return {"instances": instances, "errors": errors, "warnings": warnings, "records": records}

    def close(self) -> None:
        for source in self._sources.values():
            source.close()


def unreadable_message(record: Record) -> str:
    """Why an instance with values the driver could not read fails (river.unreadable)."""
    return "cannot read the source row: " + "; ".join(record.unreadable)


def unreadable_outcome(resource_id: str, record: Record) -> Outcome:
    return Outcome(resource_id, record.primary_key_value, error=unreadable_message(record))


def _report(outcome: Outcome, message: str) -> dict[str, Any]:
    return {
        "resource_id": outcome.resource_id,
        "primary_key_value": outcome.primary_key_value,
        "message": message,
    }


__all__ = ["Engine", "InstanceError", "Outcome"]
