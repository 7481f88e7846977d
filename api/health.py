"""GET /health: is every part FHIR River needs up, and if not, which and why.

    report = check(services())     # {"status": "ok" | "unavailable", "problems": [...], parts}

Parts, each `{"ok": bool, ...}`:
- `kafka`: a metadata request; `store`: a ping; `mappings`: how many resources;
- `services`: the extractor, transformer and loader, and their live loops
  (`transformer-live`, `loader-live`; `extractor-live` with LIVE_SOURCES), each
  alive when its consumer group has a member (Kafka drops a member whose
  heartbeats stop: a killed process is named here within the session timeout, 10 s);
- `connectors` (with LIVE_SOURCES): each connector and each of its tasks, as Kafka
  Connect reports them, a failed task with the first line of its trace;
- `replication_slots` (CDC sources): whether a task reads the slot, and the WAL the
  source server keeps for it, over REPLICATION_SLOT_MAX_BYTES being a problem.

The answer is 200 when every part is ok, else 503, and `problems` names each part
that is not, in one sentence. `live_source_problem` tells the API's batch pages
why a live batch is `degraded`.
"""

from __future__ import annotations

from typing import Any

from adapters.connect import Connect, ConnectorError, slot_state, trace_summary
from adapters.kafka import KafkaUnavailable, group_members, group_name, topic_name
from api.services import Services
from river.events import TOPICS
from river.live import CDC, LiveSource

TIMEOUT = 2.0  # seconds each part has to answer
# Each service's consumer groups: the transformer and the loader run the live path's
# topics in loops of their own, the extractor too when it follows live sources.
PIPELINE = ("extractor", "transformer", "transformer-live", "loader", "loader-live")


def check(river: Services) -> dict[str, Any]:
    parts: dict[str, dict[str, Any]] = {
        "kafka": _kafka(river),
        "store": _store(river),
        "mappings": _mappings(river),
    }
    sources = river.live_sources()
    if parts["kafka"]["ok"]:
        parts["services"] = _services(river, PIPELINE + (("extractor-live",) if sources else ()))
    if sources:
        parts["connectors"] = _connectors(river.connect(), sources)
    cdc = [source for source in sources if source.kind == CDC and source.slot]
    if cdc:
        parts["replication_slots"] = _slots(river, cdc)
    problems = [problem for part in parts.values() for problem in _problems(part)]
    return {"status": "unavailable" if problems else "ok", "problems": problems, **parts}


def live_source_problem(river: Services, source: LiveSource) -> str | None:
    """Why a live source is not following its source now (its connector or a task is
    not running), or None while it is: its live batch is `degraded` meanwhile."""
    return _connectors(river.connect(), [source]).get("error")


# --- parts -------------------------------------------------------------------------------


def _kafka(river: Services) -> dict[str, Any]:
    try:
        metadata = river.kafka_metadata(TIMEOUT)
    except KafkaUnavailable as error:
        return {"ok": False, "error": str(error)}
    wanted = [topic_name(river.settings, t) for t in TOPICS]
    missing = [t for t in wanted if t not in metadata.topics]
    return {
        "ok": True,
        "brokers": len(metadata.brokers),
        # Informative: the services create their topics, or the broker does on first use.
        **({"missing_topics": missing} if missing else {}),
    }


def _store(river: Services) -> dict[str, Any]:
    backend = type(river.store).__name__
    try:
        river.store.ping()
    except Exception as error:  # StoreUnavailable, or whatever a broken driver raises
        return {"ok": False, "backend": backend, "error": str(error)}
    return {"ok": True, "backend": backend}


def _mappings(river: Services) -> dict[str, Any]:
    count = len(river.engine.mappings)
    if not count:
        return {"ok": False, "resources": 0, "error": "no mapping resource is loaded"}
    return {"ok": True, "resources": count}


def _services(river: Services, names: tuple[str, ...]) -> dict[str, Any]:
    groups = {name: group_name(river.settings, name) for name in names}
    try:
        members = group_members(river.kafka_admin(), list(groups.values()), TIMEOUT)
    except KafkaUnavailable as error:
        return {"ok": False, "error": str(error)}
    part: dict[str, Any] = {}
    down = []
    for name, group in groups.items():
        processes = members.get(group, 0)
        part[name] = {"ok": processes > 0, "processes": processes}
        if not processes:
            down.append(name)
    part["ok"] = not down
    if down:
        part["error"] = (
            f"not running: {', '.join(down)} (no process in consumer group"
            f" {groups[down[0]]}{' and the others' if len(down) > 1 else ''};"
            " make status shows why, and the service's log)"
        )
    return part


def _connectors(connect: Connect, sources: list[LiveSource]) -> dict[str, Any]:
    part: dict[str, Any] = {}
    problems = []
    for source in sources:
        try:
            status = connect.status(source.name)
        except ConnectorError as error:
            return {"ok": False, "error": str(error)}
        if status is None:
            part[source.name] = {"ok": False, "state": "MISSING"}
            problems.append(
                f"connector {source.name} is not in Kafka Connect (river connectors push)"
            )
            continue
        state = status.get("connector", {}).get("state", "UNASSIGNED")
        tasks = [
            {"id": task.get("id"), "state": task.get("state", "UNASSIGNED")}
            | ({"trace": trace_summary(task["trace"])} if task.get("trace") else {})
            for task in status.get("tasks", [])
        ]
        ok = state == "RUNNING" and bool(tasks) and all(t["state"] == "RUNNING" for t in tasks)
        part[source.name] = {"ok": ok, "state": state, "tasks": tasks}
        if not ok:
            problems.append(_connector_problem(source.name, state, tasks))
    part["ok"] = not problems
    if problems:
        part["error"] = "; ".join(problems)
    return part


def _slots(river: Services, sources: list[LiveSource]) -> dict[str, Any]:
    limit = river.settings.replication_slot_max_bytes
    part: dict[str, Any] = {}
    problems = []
    for source in sources:
        assert source.slot is not None
        try:
            url = river.engine.source(source.resource_ids[0]).url
            state = slot_state(url.render_as_string(hide_password=False), source.slot)
        except ConnectorError as error:
            part[source.slot] = {"ok": False}
            problems.append(f"replication slot {source.slot}: {error}")
            continue
        if state is None:  # made by the connector's first start: none yet is no harm
            part[source.slot] = {"ok": True, "exists": False, "connector": source.name}
            continue
        ok = state.active and state.retained_bytes <= limit
        part[source.slot] = {
            "ok": ok,
            "connector": source.name,
            "active": state.active,
            "retained_bytes": state.retained_bytes,
            "lag_bytes": state.lag_bytes,
        }
        if not state.active:
            problems.append(
                f"replication slot {source.slot} (connector {source.name}) is not being read:"
                f" the source server keeps {_mb(state.retained_bytes)} of WAL for it, growing"
                " until the connector follows again or the slot is dropped"
            )
        elif state.retained_bytes > limit:
            problems.append(
                f"replication slot {source.slot} (connector {source.name}) keeps"
                f" {_mb(state.retained_bytes)} of WAL on the source server, over"
                f" REPLICATION_SLOT_MAX_BYTES ({_mb(limit)}): the connector is behind"
            )
    part["ok"] = not problems
    if problems:
        part["error"] = "; ".join(problems)
    return part


# --- words -------------------------------------------------------------------------------


def _problems(part: dict[str, Any]) -> list[str]:
    return [] if part["ok"] else [part.get("error", "not ok")]


def _connector_problem(name: str, state: str, tasks: list[dict[str, Any]]) -> str:
    if state != "RUNNING":
        return f"connector {name} is {state}"
    if not tasks:
        return f"connector {name} has no task running"
    bad = [t for t in tasks if t["state"] != "RUNNING"]
    task = bad[0]
    said = f": {task['trace']}" if task.get("trace") else ""
    return (
        f"connector {name}: task {task['id']} is {task['state']}{said}"
        f" (after fixing the cause: river connectors push restarts it)"
    )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"
