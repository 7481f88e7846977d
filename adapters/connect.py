"""The `river connectors` commands: Kafka Connect's REST API, from the command line.

    code = push("http://127.0.0.1:8083")        # every file of kafka_connect_connectors/sources
    code = push(url, ["kafka_connect_connectors/sources/mimic-postgres-cdc.json"])
    code = remove(url, "fhir-river-mimic-cdc")   # and the replication slot it leaves

A connector file is the seed's `{"name": ..., "config": {...}}`. `push` creates or
updates each connector with `PUT /connectors/<name>/config` (idempotent: pushing
the same file twice changes nothing), then follows `GET /connectors/<name>/status`
until the connector and its tasks run or fail, and prints one line per connector.
`remove` stops a connector, deletes its offsets (Connect keeps them after a DELETE,
and Debezium would resume a connector of the same name at an LSN its new slot does
not hold) and deletes it; for Debezium's PostgreSQL connector it also drops the
replication slot and the publication it made, since PostgreSQL keeps every WAL
segment a forgotten slot still needs (docs/operations.md).

Secrets: connector files hold `${env:NAME}` placeholders that Connect resolves from
its own environment (its EnvVarConfigProvider), never a literal password: `push`
refuses a file with one. Whatever Connect says (errors, traces) is printed with
anything password-like masked.

Each function returns the command's exit status (cli/main.py): 0 when every
connector runs (push) or the connector and its slot are gone (remove), 1 otherwise.
Problems are one sentence on stderr, prefixed `river:`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests
from dotenv import dotenv_values

from river.connectors import (
    SOURCES_FOLDER,
    ConnectorError,
    ConnectorFile,
    default_files,
    load_file,
)
from river.secrets import Secrets, mask
from river.secrets import mask_config as mask_config  # the commands' name for it

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
REQUEST_TIMEOUT = 10.0
STATUS_TIMEOUT = 30.0
POLL_SECONDS = 0.25
# A connector is taken as running once it and its tasks stayed RUNNING this long: an
# updated connector restarts its tasks asynchronously, and a task that cannot reach its
# source fails within about a second.
STABLE_SECONDS = 1.0
SLOT_TIMEOUT = 15.0
TRACE_CHARS = 400

_ENV_PLACEHOLDER = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")

# Defaults of the local stack (.env.example), for resolving ${env:NAME} on this side.
_LOCAL_DEFAULTS = {
    "POSTGRES_HOST": "127.0.0.1",
    "POSTGRES_PORT": "5432",
    "POSTGRES_USER": "postgres",
    "POSTGRES_PASSWORD": "postgres",
    "SOURCE_DB_NAME": "mimic",
}


class ConnectUnreachable(ConnectorError):
    """Connect does not answer at all."""


# --- masking (river/secrets.py's: one module, one mask) --------------------------------------


def mask_secrets(text: str) -> str:
    """`text` (a message, a trace) with password-like values and URL passwords masked."""
    return mask(text)


def _one_line(text: str) -> str:
    return " ".join(mask_secrets(text).split())


# --- Connect's REST API ----------------------------------------------------------------------


class Connect:
    """A small client of Kafka Connect's REST API: each failure is a ConnectorError
    saying, in one sentence, what went wrong."""

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def request(
        self, method: str, path: str, body: Any = None, *, ok: Iterable[int] = ()
    ) -> tuple[int, Any]:
        """(status, decoded body); a status >= 400 not in `ok` raises ConnectorError."""
        try:
            answer = self.session.request(
                method,
                self.url + path,
                json=body,
                timeout=self.timeout,
                headers={"Accept": "application/json"},
            )
        except requests.ConnectionError:
            raise ConnectUnreachable(
                f"Kafka Connect is not reachable at {self.url}: start it (make start) or set"
                " KAFKA_CONNECT_URL"
            ) from None
        except requests.Timeout:
            raise ConnectUnreachable(
                f"Kafka Connect at {self.url} did not answer {method} {path} within"
                f" {self.timeout:.0f} s"
            ) from None
        except requests.RequestException as error:
            raise ConnectUnreachable(
                f"cannot reach Kafka Connect at {self.url} ({error})"
            ) from None
        try:
            decoded = answer.json() if answer.content else None
        except ValueError:
            decoded = answer.text
        if answer.status_code >= 400 and answer.status_code not in set(ok):
            raise ConnectorError(
                f"Kafka Connect refused {method} {path} ({answer.status_code}): "
                + _connect_message(decoded)
            )
        return answer.status_code, decoded

    def put_config(self, name: str, config: Mapping[str, str]) -> bool:
        """Creates or updates; True when the connector was created."""
        status, _ = self.request("PUT", f"/connectors/{quote(name, safe='')}/config", dict(config))
        return status == 201

    def status(self, name: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/connectors/{quote(name, safe='')}/status", ok=[404])
        return None if status == 404 else body

    def config(self, name: str) -> dict[str, str] | None:
        status, body = self.request("GET", f"/connectors/{quote(name, safe='')}/config", ok=[404])
        return None if status == 404 else body

    def restart_failed(self, name: str) -> None:
        self.request(
            "POST",
            f"/connectors/{quote(name, safe='')}/restart?includeTasks=true&onlyFailed=true",
            ok=[404, 409],
        )

    def slot_user(self, slot: str, dbname: str | None, *, besides: str) -> str | None:
        """Another connector reading the same replication slot of the same database."""
        _, everything = self.request("GET", "/connectors?expand=info")
        for other, described in sorted((everything or {}).items()):
            config = (described.get("info") or {}).get("config") or {}
            if (
                other != besides
                and (config.get("connector.class") == POSTGRES_CONNECTOR or "slot.name" in config)
                and (config.get("slot.name") or "debezium") == slot
                and config.get("database.dbname") == dbname
            ):
                return other
        return None

    def stop_and_reset_offsets(self, name: str, timeout: float = SLOT_TIMEOUT) -> str:
        """Stops the connector and deletes its source offsets, so that a connector of the
        same name starts afresh (Debezium would otherwise resume at an LSN that the dropped
        slot no longer holds, and fail). Connect keeps offsets after a DELETE. '' when done,
        else what was not done (an old Connect without KIP-875: offsets kept)."""
        path = f"/connectors/{quote(name, safe='')}"
        status, _ = self.request("PUT", path + "/stop", ok=[404, 405])
        if status in (404, 405):
            return "this Kafka Connect cannot stop a connector (before 3.5): its offsets are kept"
        deadline = time.monotonic() + timeout
        while True:
            state = self.status(name) or {}
            if (state.get("connector") or {}).get("state") == "STOPPED" and not state.get("tasks"):
                break
            if time.monotonic() >= deadline:
                return f"it did not stop within {timeout:.0f} s: its offsets are kept"
            time.sleep(POLL_SECONDS)
        while True:
            # 409 while the stop has not reached every worker yet
            status, body = self.request("DELETE", path + "/offsets", ok=[404, 405, 409])
            if status in (404, 405):
                return "this Kafka Connect cannot reset offsets (before 3.6): they are kept"
            if status < 400:
                return ""
            if time.monotonic() >= deadline:
                return f"its offsets could not be reset ({_connect_message(body)})"
            time.sleep(POLL_SECONDS)

    def delete(self, name: str) -> bool:
        """False when there was no such connector."""
        status, _ = self.request("DELETE", f"/connectors/{quote(name, safe='')}", ok=[404])
        return status != 404


def _connect_message(body: Any) -> str:
    """Connect's error message, on one line, secrets masked, with a hint when it shows an
    unresolved ${env:NAME} (a variable missing from Connect's environment)."""
    message = body.get("message") if isinstance(body, dict) else body
    text = _one_line(str(message or "no message")).rstrip(".")
    missing = sorted(set(_ENV_PLACEHOLDER.findall(text)))
    if missing:
        names = ", ".join(missing)
        text += f" (is {names} set in Kafka Connect's environment? unset, ${{env:..}} stays as is)"
    return text


# --- push ------------------------------------------------------------------------------------


@dataclass
class _Watch:
    file: ConnectorFile
    created: bool
    state: str = "UNASSIGNED"
    detail: str = ""
    running_since: float | None = None
    restarted: bool = False
    done: bool = False


def push(
    connect_url: str,
    files: Iterable[str | os.PathLike[str]] | None = None,
    *,
    timeout: float = STATUS_TIMEOUT,
    out: IO[str] | None = None,
) -> int:
    """PUT every file's config (default: every file of kafka_connect_connectors/sources),
    then wait until each connector and its tasks run or fail (at most `timeout` seconds)
    and print one line per connector."""
    out = out or sys.stdout
    try:
        paths = list(files) if files else default_files()
        if not paths:
            raise ConnectorError(f"no connector file (*.json) in {SOURCES_FOLDER}")
        loaded = [load_file(path) for path in paths]  # every file checked before any push
        names = [c.name for c in loaded]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConnectorError(f"two files name the connector {twice[0]}: give each its own")
        connect = Connect(connect_url)
        watches = []
        for c in loaded:
            try:
                watches.append(_Watch(c, connect.put_config(c.name, c.config)))
            except ConnectUnreachable:
                raise
            except ConnectorError as error:  # this one refused (invalid config): the others go on
                watches.append(_Watch(c, False, "REFUSED", str(error), done=True))
        _follow(connect, [w for w in watches if not w.done], timeout)
    except ConnectorError as error:
        print(f"river: {error}", file=sys.stderr)
        return 1
    for watch in watches:
        if watch.state == "REFUSED":
            line = f"{watch.file.name}: REFUSED ({watch.file.path}: {watch.detail})"
        else:
            verb = "created" if watch.created else "updated"
            line = f"{watch.file.name}: {watch.state} ({verb} from {watch.file.path}"
            line += f"; {watch.detail})" if watch.detail else ")"
        print(line, file=out)
    return 0 if all(w.state == "RUNNING" for w in watches) else 1


def _follow(connect: Connect, watches: list[_Watch], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        for watch in watches:
            if not watch.done:
                _observe(connect, watch, now)
        pending = [w for w in watches if not w.done]
        if not pending:
            return
        if now >= deadline:
            for watch in pending:
                watch.detail = f"not running after {timeout:.0f} s" + (
                    f": {watch.detail}" if watch.detail else ""
                )
            return
        time.sleep(POLL_SECONDS)


def _observe(connect: Connect, watch: _Watch, now: float) -> None:
    status = connect.status(watch.file.name)
    if status is None:  # just created: the status comes a moment later
        return
    connector = status.get("connector") or {}
    tasks = status.get("tasks") or []
    states = [connector.get("state", "UNASSIGNED")] + [t.get("state", "") for t in tasks]
    failed_task = next((t for t in tasks if t.get("state") == "FAILED"), None)
    if connector.get("state") == "FAILED" or failed_task:
        if not watch.created and not watch.restarted:
            # An update of a failed connector with the same config does not restart it: do,
            # once (the source may be back).
            watch.restarted = True
            watch.running_since = None
            connect.restart_failed(watch.file.name)
            return
        watch.state, watch.done = "FAILED", True
        failing = failed_task or connector
        where = f"task {failing.get('id')}" if failed_task else "connector"
        watch.detail = f"{where}: {trace_summary(failing.get('trace', ''))}"
        return
    if connector.get("state") in ("PAUSED", "STOPPED"):
        watch.state, watch.done = connector["state"], True
        watch.detail = "resume it with PUT /connectors/<name>/resume"
        return
    if tasks and all(s == "RUNNING" for s in states):
        if watch.running_since is None:
            watch.running_since = now
        if now - watch.running_since >= STABLE_SECONDS:
            watch.state, watch.done = "RUNNING", True
            watch.detail = f"{len(tasks)} task{'s' if len(tasks) > 1 else ''} running"
        return
    watch.running_since = None
    watch.state = next((s for s in states if s != "RUNNING"), "UNASSIGNED") or "UNASSIGNED"
    watch.detail = "" if tasks else "no task yet"


def trace_summary(trace: str) -> str:
    """The trace's first line, and its deepest cause when there is one (Debezium's first
    line often only says that the connector stopped)."""
    lines = [line.strip() for line in (trace or "").splitlines() if line.strip()]
    if not lines:
        return "no trace"
    summary = lines[0]
    causes = [line for line in lines if line.startswith("Caused by:")]
    if causes and causes[-1][len("Caused by:") :].strip() not in summary:
        summary += f" (cause: {causes[-1][len('Caused by:') :].strip()})"
    summary = _one_line(summary)
    if len(summary) > TRACE_CHARS:
        summary = summary[: TRACE_CHARS - 3] + "..."
    if "no longer available on the server" in trace:
        summary += (
            " [offsets of an earlier connector of this name outlived its replication slot:"
            " run river connectors remove NAME, then push again]"
        )
    return summary


# --- remove ----------------------------------------------------------------------------------


def remove(
    connect_url: str,
    name: str,
    source_db_url: str | None = None,
    *,
    out: IO[str] | None = None,
) -> int:
    """Stop the connector, reset its offsets (KIP-875) and DELETE it; for Debezium
    PostgreSQL, drop its replication slot (once the stopped task released it; unless another
    connector reads it) and the publication it made, in `source_db_url` (default: the
    database its config names, ${env:NAME} read from this environment)."""
    out = out or sys.stdout
    try:
        connect = Connect(connect_url)
        config = connect.config(name)
        if config is None:
            raise ConnectorError(f"Kafka Connect at {connect.url} has no connector named {name}")
        slot = publication = sharing = None
        if config.get("connector.class") == POSTGRES_CONNECTOR or "slot.name" in config:
            slot = config.get("slot.name") or "debezium"  # Debezium's defaults
            publication = config.get("publication.name") or "dbz_publication"
            sharing = connect.slot_user(slot, config.get("database.dbname"), besides=name)
        offsets_note = connect.stop_and_reset_offsets(name)
        connect.delete(name)
    except ConnectorError as error:
        print(f"river: {error}", file=sys.stderr)
        return 1
    if offsets_note:
        print(f"river: warning: {name}: {offsets_note}", file=sys.stderr)
    if slot is None:
        print(f"{name}: removed", file=out)
        return 0
    if sharing:
        print(f"{name}: removed; replication slot {slot} kept: {sharing} uses it too", file=out)
        return 0
    own_publication = config.get("publication.autocreate.mode", "all_tables") != "disabled"
    try:
        url = source_db_url or _database_url(config)
        dropped_slot, dropped_publication = _drop_slot(
            url, slot, publication if own_publication else None
        )
    except ConnectorError as error:
        print(
            f"river: {name} was removed, but {error}: drop it by hand with"
            f" SELECT pg_drop_replication_slot('{slot}') in its database (PostgreSQL keeps WAL"
            " for it until then)",
            file=sys.stderr,
        )
        return 1
    said = [
        f"{name}: removed",
        f"replication slot {slot} " + ("dropped" if dropped_slot else "already gone"),
    ]
    if own_publication:
        said.append(
            f"publication {publication} " + ("dropped" if dropped_publication else "already gone")
        )
    print("; ".join(said), file=out)
    return 0


def _local_env() -> dict[str, str]:
    """This side's settings for ${env:NAME}: the environment, over .env, over the local
    stack's defaults."""
    env = dict(_LOCAL_DEFAULTS)
    if Path(".env").is_file():
        env.update({k: v for k, v in dotenv_values(".env").items() if v})
    env.update({k: v for k, v in os.environ.items() if v})
    return env


def _resolve(value: str, env: Mapping[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        if match.group(1) not in env:
            raise ConnectorError(
                f"${{env:{match.group(1)}}} is not set here, so its source database is unknown"
                " (set it, or pass the database URL)"
            )
        return env[match.group(1)]

    return _ENV_PLACEHOLDER.sub(lookup, value)


def _database_url(config: Mapping[str, str]) -> dict[str, str]:
    env = _local_env()
    return {
        "host": _resolve(config.get("database.hostname", "127.0.0.1"), env),
        "port": _resolve(config.get("database.port", "5432"), env),
        "user": _resolve(config.get("database.user", "postgres"), env),
        "password": _resolve(config.get("database.password", ""), env),
        "dbname": _resolve(config.get("database.dbname", "postgres"), env),
    }


@dataclass(frozen=True)
class SlotState:
    """A replication slot as PostgreSQL sees it."""

    active: bool  # a connector's task reads it now
    retained_bytes: int  # WAL the server keeps for it: what an idle slot costs the disk
    lag_bytes: int  # WAL written since what the connector last confirmed


def slot_state(url: str, slot: str) -> SlotState | None:
    """The state of a replication slot of the source database at `url`; None if there
    is no such slot. ConnectorError if the database cannot be reached."""
    with _source_connection(url) as connection:
        row = connection.execute(
            "SELECT active,"
            " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,"
            " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            [slot],
        ).fetchone()
    return None if row is None else SlotState(bool(row[0]), int(row[1]), int(row[2]))


def _source_connection(url: str | dict[str, str]) -> Any:
    """A psycopg connection (autocommit) to a source database: an SQLAlchemy or libpq
    URL, or connection keywords."""
    import psycopg

    try:
        if isinstance(url, str):
            url = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        return psycopg.connect(**url, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        # libpq may quote the connection string it was given: its password is known here.
        known = Secrets.of_url(url) if isinstance(url, str) else Secrets([url.get("password")])
        said = " ".join(known.mask(str(error)).split())
        raise ConnectorError(f"its source database cannot be reached ({said})") from None


def _drop_slot(url: str | dict[str, str], slot: str, publication: str | None) -> tuple[bool, bool]:
    """Drops the slot once no process holds it (the deleted connector's task lets go
    within a few seconds), then the publication; (slot dropped, publication dropped)."""
    import psycopg
    from psycopg import errors, sql

    with _source_connection(url) as connection:
        deadline = time.monotonic() + SLOT_TIMEOUT
        dropped_slot = False
        while True:
            row = connection.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]
            ).fetchone()
            if row is None:
                break
            if not row[0]:
                try:
                    connection.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                    dropped_slot = True
                    break
                except errors.ObjectInUse:  # taken again between the two statements
                    pass
                except psycopg.Error as error:
                    raise ConnectorError(
                        f"its replication slot {slot} could not be dropped"
                        f" ({_one_line(str(error))})"
                    ) from None
            if time.monotonic() >= deadline:
                raise ConnectorError(
                    f"its replication slot {slot} is still in use after {SLOT_TIMEOUT:.0f} s"
                )
            time.sleep(0.2)
        dropped_publication = False
        if publication:
            exists = connection.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]
            ).fetchone()
            if exists:
                connection.execute(
                    sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication))
                )
                dropped_publication = True
    return dropped_slot, dropped_publication
