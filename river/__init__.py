"""FHIR River's core: Pyrog mappings to FHIR R4, pure (no Kafka, no store).

- `river.mapping`: read Pyrog exports, validate, analyse into plans (`river.plan`);
  `river.pyrog` reads them from Pyrog's GraphQL API instead.
- `river.sql`: one streamed SQL query per resource, records grouped by primary key.
- `river.transform`: a record to a FHIR resource; `river.values` casts and
  condition tests; `river.scripts` cleaning and merging scripts;
  `river.concept_maps`; `river.identity` ids and tags.
- `river.validation`: FHIR R4 validity, required bindings included.
- `river.engine`: all of the above wired together, as preview, batch and the
  services use it. The `river` command is the `cli` package, beside it.
"""

from river.errors import InstanceError, InvalidMapping, RiverError, SourceError, UnknownResource
from river.settings import Settings

__all__ = [
    "InstanceError",
    "InvalidMapping",
    "RiverError",
    "Settings",
    "SourceError",
    "UnknownResource",
]
