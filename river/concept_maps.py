"""ConceptMaps: source code -> first target code, read once per map.

From a FHIR API (`GET {FHIR_API_URL}/ConceptMap/{id}`) when one is set, else
from local files (ConceptMap resources or Bundles of them, a file or a folder)
named by the `CONCEPT_MAPS` setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import requests

from river.errors import ConfigurationError, RiverError

CodeMap = dict[str, str]


class ConceptMapNotFound(RiverError):
    def __init__(self, concept_map_id: str, where: str) -> None:
        self.concept_map_id = concept_map_id
        super().__init__(f"ConceptMap {concept_map_id!r} not found in {where}")


class ConceptMaps:
    """Every ConceptMap a mapping may use, by id, as plain code maps."""

    def __init__(self, maps: dict[str, CodeMap] | None = None, fhir_api_url: str = "") -> None:
        self._maps = dict(maps or {})
        self.fhir_api_url = fhir_api_url.rstrip("/")

    @classmethod
    def from_settings(cls, fhir_api_url: str = "", location: str = "") -> ConceptMaps:
        if fhir_api_url:
            return cls(fhir_api_url=fhir_api_url)
        if not location:
            return cls()
        return cls.from_files(location)

    @classmethod
    def from_files(cls, location: str | Path) -> ConceptMaps:
        path = Path(location)
        if path.is_dir():
            files = sorted(path.glob("*.json"))
        elif path.is_file():
            files = [path]
        else:
            raise ConfigurationError(f"CONCEPT_MAPS: no such file or folder: {path}")
        maps: dict[str, CodeMap] = {}
        for file in files:
            try:
                document = orjson.loads(file.read_bytes())
            except orjson.JSONDecodeError as error:
                raise ConfigurationError(
                    f"ConceptMap file {file} is not valid JSON: {error}"
                ) from None
            for resource in _concept_map_resources(document):
                if resource.get("id"):
                    maps[resource["id"]] = code_map(resource)
        return cls(maps)

    def get(self, concept_map_id: str) -> CodeMap:
        if concept_map_id not in self._maps:
            self._maps[concept_map_id] = self._fetch(concept_map_id)
        return self._maps[concept_map_id]

    def _fetch(self, concept_map_id: str) -> CodeMap:
        if not self.fhir_api_url:
            raise ConceptMapNotFound(
                concept_map_id, "the CONCEPT_MAPS files (set CONCEPT_MAPS or FHIR_API_URL)"
            )
        url = f"{self.fhir_api_url}/ConceptMap/{concept_map_id}"
        try:
            answer = requests.get(url, timeout=10, headers={"Accept": "application/fhir+json"})
        except requests.RequestException as error:
            raise RiverError(f"cannot reach the FHIR API at {url}: {error}") from None
        if answer.status_code == 404:
            raise ConceptMapNotFound(concept_map_id, self.fhir_api_url)
        if not answer.ok:
            raise RiverError(f"the FHIR API answered {answer.status_code} for {url}")
        return code_map(answer.json())


def code_map(concept_map: dict[str, Any]) -> CodeMap:
    """source code -> the first target code, over every group of the map."""
    codes: CodeMap = {}
    for group in concept_map.get("group") or []:
        for element in group.get("element") or []:
            targets = [t for t in element.get("target") or [] if t.get("code") is not None]
            if element.get("code") is not None and targets and element["code"] not in codes:
                codes[element["code"]] = targets[0]["code"]
    return codes


def _concept_map_resources(document: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(document, dict):
        return
    if document.get("resourceType") == "ConceptMap":
        yield document
    elif document.get("resourceType") == "Bundle":
        for entry in document.get("entry") or []:
            yield from _concept_map_resources(entry.get("resource"))
