"""Validation speed: FHIR R4 resources validated per second on one core.

    .venv/bin/python benchmarks/validation.py [--instances 100000] [--reference 20000]
                                              [--fastjsonschema]

Builds varied synthetic Patient and Condition resources shaped like those the
mimic-demo mappings produce (identifiers, names, dates with offsets, codings, logical
references, meta tags and lastUpdated), then times `Validator.validate` on all of them
(required bindings included). For reference, on the first `--reference` of them:
fhir.resources' R4B models (no binding checks), and with `--fastjsonschema` the
official schema compiled by fastjsonschema for one resource type (compiling takes
seconds a type). A sample made invalid (one fault each) times the path that lists
faults. Target: 20,000 resources/s or more, so validation never bottlenecks the pipeline.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from river.validation import SCHEMA_FILE, Validator  # noqa: E402

TARGET = 20_000
TERMINOLOGY = "http://terminology.arkhn.org"
MARITAL = ["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", "SEPARATED", "UNKNOWN (DEFAULT)"]
LANGUAGES = ["ENGL", "SPAN", "RUSS", "PTUN", "CANT", "MAND", "*ARM"]
OFFSETS = ["+02:00", "+01:00", "Z", "-05:00"]


def an_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def a_date(rng: random.Random, low: int = 2000, high: int = 2200) -> str:
    return f"{rng.randint(low, high)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"


def a_date_time(rng: random.Random) -> str:
    return (
        f"{a_date(rng)}T{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:"
        f"{rng.randint(0, 59):02}{rng.choice(OFFSETS)}"
    )


def meta(rng: random.Random, resource_id: str) -> dict[str, Any]:
    return {
        "lastUpdated": f"2024-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}T"
        f"{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}."
        f"{rng.randint(0, 999):03}+00:00",
        "tag": [
            {"system": f"{TERMINOLOGY}/CodeSystem/source", "code": "cktlnp0f300300mmznmyqln70"},
            {"system": f"{TERMINOLOGY}/CodeSystem/resource", "code": resource_id},
        ],
    }


def patients(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for row in range(n):
        subject = str(10000 + row)
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": an_id(rng),
            "meta": meta(rng, "cktlnp0ji006e0mmzat7dwb98"),
            "identifier": [{"value": f"{row} ({k + 1})"} for k in range(rng.randint(1, 3))],
            "gender": rng.choice(["male", "female", "other", "unknown"]),
            "birthDate": a_date(rng, 2000, 2150),
        }
        if rng.random() < 0.5:
            resource["identifier"][0]["system"] = f"{TERMINOLOGY}/patients"
        if rng.random() < 0.5:
            resource["name"] = [{"family": f"Name{subject}", "given": ["Given", subject]}]
        if rng.random() < 0.4:
            resource["deceasedDateTime"] = rng.choice([a_date(rng), a_date_time(rng)])
        elif rng.random() < 0.1:
            resource["deceasedBoolean"] = False
        if rng.random() < 0.8:
            resource["maritalStatus"] = {"coding": [{"code": rng.choice(MARITAL)}]}
        if rng.random() < 0.6:
            resource["communication"] = [
                {"language": {"coding": [{"code": rng.choice(LANGUAGES)}]}}
            ]
        out.append(resource)
    return out


def reference(rng: random.Random, resource_type: str, value: str) -> dict[str, Any]:
    return {
        "type": resource_type,
        "identifier": {"system": f"{TERMINOLOGY}/{an_id(rng)}", "value": value},
        "reference": f"{resource_type}/{an_id(rng)}",
    }


def conditions(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed + 1)
    out = []
    for _ in range(n):
        code: dict[str, Any] = {
            "system": "http://hl7.org/fhir/sid/icd-9",
            "code": str(rng.randint(1000, 99999)),
        }
        if rng.random() < 0.7:
            code["display"] = f"Diagnosis {code['code']}"
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": an_id(rng),
            "meta": meta(rng, "cktlnp0oa00at0mmzp0b1u7zx"),
            "subject": reference(rng, "Patient", str(rng.randint(10000, 99999))),
            "code": {"coding": [code]},
        }
        if rng.random() < 0.9:
            admission = str(rng.randint(100000, 199999))
            resource["encounter"] = {**reference(rng, "Encounter", admission), "display": admission}
        if rng.random() < 0.3:
            resource["recordedDate"] = a_date_time(rng)
        if rng.random() < 0.3:
            resource["note"] = [{"text": "seq_num " + str(rng.randint(1, 20))}]
        out.append(resource)
    return out


def spoil(resources: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """A copy of each resource with one fault, of a few kinds."""
    rng = random.Random(seed)
    faults: list[Callable[[dict[str, Any]], None]] = [
        lambda r: r.update(id="not a valid id"),
        lambda r: r.update(foo="bar"),
        lambda r: r["meta"].update(lastUpdated="2024-01-01"),
        lambda r: (
            r.update(identifier={"value": "1"})
            if r["resourceType"] == "Patient"
            else r.update(subject="Patient/1")
        ),
        lambda r: (
            r.update(gender="not-a-valid-gender")
            if r["resourceType"] == "Patient"
            else r.pop("subject")
        ),
    ]
    out = []
    for resource in resources:
        copy = {**resource, "meta": dict(resource["meta"])}
        rng.choice(faults)(copy)
        out.append(copy)
    return out


def rate(check: Callable[[Any], Any], resources: Iterable[dict[str, Any]]) -> float:
    resources = list(resources)
    gc.collect()
    started = time.perf_counter()
    for resource in resources:
        check(resource)
    return len(resources) / (time.perf_counter() - started)


def fhir_resources_check(resource_type: str) -> Callable[[dict[str, Any]], Any]:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type).model_validate


def fastjsonschema_check(resource_type: str) -> tuple[Callable[[dict[str, Any]], Any], float]:
    import fastjsonschema
    import orjson

    schema = orjson.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
    started = time.perf_counter()
    check = fastjsonschema.compile(
        {"definitions": schema["definitions"], "$ref": f"#/definitions/{resource_type}"}
    )
    return check, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--reference", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fastjsonschema", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    started = time.perf_counter()
    validator = Validator()
    validator.warm(["Patient", "Condition"])
    print(
        f"validator ready in {time.perf_counter() - started:.3f} s (schema loaded, 2 types built)"
    )
    print(f"one core, {args.instances:,} varied synthetic resources per type; per second:")
    header = f"{'resource':10} {'validate':>10} {'is_valid':>10} {'invalid':>9} {'target':>8}"
    header += f" {'fhir.resources R4B':>19}"
    if args.fastjsonschema:
        header += f" {'fastjsonschema':>15}"
    print(header)
    for resource_type, make in (("Patient", patients), ("Condition", conditions)):
        resources = make(args.instances, args.seed)
        rate(validator.validate, resources[:2000])  # warm-up
        invalid = [r for r in resources if validator.validate(r)]
        if invalid:
            raise SystemExit(f"{len(invalid)} synthetic {resource_type} invalid: {invalid[0]}")
        validate_rate = rate(validator.validate, resources)
        is_valid_rate = rate(validator.is_valid, resources)
        spoiled = spoil(resources[: max(1000, args.instances // 20)], args.seed)
        missed = [r for r in spoiled if not validator.validate(r)]
        if missed:
            raise SystemExit(f"a spoiled {resource_type} passed: {missed[0]}")
        spoiled_rate = rate(validator.validate, spoiled)
        sample = resources[: args.reference]
        reference_rate = rate(fhir_resources_check(resource_type), sample)
        line = (
            f"{resource_type:10} {validate_rate:10,.0f} {is_valid_rate:10,.0f} "
            f"{spoiled_rate:9,.0f} {TARGET:8,} {reference_rate:19,.0f}"
        )
        if args.fastjsonschema:
            check, compile_seconds = fastjsonschema_check(resource_type)
            line += f" {rate(check, sample):15,.0f} (compiled in {compile_seconds:.1f} s)"
        print(line)
    print(
        "validate: valid resources, messages on failure; is_valid: the same check, no"
        " messages;\ninvalid: one fault each, every fault listed with its path. fhir.resources"
        " checks no\nrequired binding; fastjsonschema checks only the bindings the schema"
        " enumerates."
    )


if __name__ == "__main__":
    main()
