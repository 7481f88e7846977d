"""The `river` command's side of the API: start a batch, follow it, show state.

    code = start_batch("http://127.0.0.1:3000", ["cktlnp0f300300mmznmyqln70"], wait=True)
    code = show_status("http://127.0.0.1:3000")               # the latest batches
    code = show_status("http://127.0.0.1:3000", batch_id)      # one batch, per resource

Each function returns the command's exit status (cli/main.py): 0 when it
ran (a completed batch, even with failed instances), 1 when it could not (the
API refused or cannot be reached, a batch failed or was canceled), 130 when
interrupted while waiting (the batch goes on). Problems are one sentence on
stderr, prefixed `river:`; what a script wants (the batch id) goes to stdout.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import requests
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from cli.login import Login, LoginError
from river.batches import STALLED  # a resource's status: no progress for a while
from river.errors import RiverError
from river.settings import Settings

POLL_SECONDS = 0.5
# How long `--wait` rides out an API that does not answer (restarted, say)
# before it gives up; the batch itself goes on regardless.
UNREACHABLE_PATIENCE = 60.0
ENDED = ("completed", "failed", "canceled")


class ApiError(RiverError):
    """The API refused a request or cannot be reached."""


def start_batch(
    api_url: str,
    resource_ids: list[str] | None,
    primary_key_values: list[Any] | dict[str, list[Any]] | None = None,
    *,
    wait: bool = False,
    progress: bool = True,
) -> int:
    """POST /batch; the batch id goes to stdout. No resource ids: every resource
    the API's mappings define. With `wait`, follow it to its end (wait_batch)."""
    try:
        if not resource_ids:
            resource_ids = [
                r["resource_id"] for r in _request("GET", api_url, "/resources")["items"]
            ]
        body: dict[str, Any] = {"resource_ids": resource_ids}
        if primary_key_values is not None:
            body["primary_key_values"] = primary_key_values
        answer = _request("POST", api_url, "/batch", json=body)
    except ApiError as error:
        return _fail(error)
    batch_id = answer["batch_id"]
    print(batch_id, flush=True)
    _err(f"batch {batch_id} started: {len(answer['resource_ids'])} resource(s)")
    if not wait:
        _err(f"follow it with: river status {batch_id}")
        return 0
    return wait_batch(api_url, batch_id, progress=progress)


def wait_batch(api_url: str, batch_id: str, progress: bool = True) -> int:
    """Follow a batch until it ends: one progress bar per resource (loaded and
    failed of expected, rate), then a summary. 0 if it completed."""
    try:
        state = _request("GET", api_url, f"/batches/{batch_id}")
        labels = _labels(api_url)
    except ApiError as error:
        return _fail(error)
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        _RateColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, disable=not progress) as bars:
            tasks = {
                r["resource_id"]: bars.add_task(
                    labels.get(r["resource_id"], r["resource_id"]), total=None, detail=""
                )
                for r in state["resources"]
            }
            unreachable_since: float | None = None
            while True:
                seconds = state["duration_seconds"]
                for r in state["resources"]:
                    done = r["loaded"] + r["failed"]
                    bars.update(
                        tasks[r["resource_id"]],
                        total=r["expected"],
                        completed=done,
                        detail=_detail(r),
                        rate=done / seconds if seconds > 0 else None,
                    )
                if state["status"] in ENDED:
                    break
                time.sleep(POLL_SECONDS)
                try:
                    state = _request("GET", api_url, f"/batches/{batch_id}")
                    unreachable_since = None
                except ApiError as error:
                    now = time.monotonic()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since > UNREACHABLE_PATIENCE:
                        raise ApiError(
                            f"{error} (for {UNREACHABLE_PATIENCE:.0f} s; the batch goes on: "
                            f"river status {batch_id})"
                        ) from None
    except ApiError as error:
        return _fail(error)
    except KeyboardInterrupt:
        _err(f"stopped waiting; batch {batch_id} goes on: river status {batch_id}")
        return 130
    _print_batch(_stdout(), state, labels)
    return _summary(state)


def show_status(api_url: str, batch_id: str | None = None) -> int:
    """One batch per resource (and its first errors), or the latest batches."""
    console = _stdout()
    try:
        if batch_id is None:
            _print_health(console, _health(api_url))
            page = _request("GET", api_url, "/batches", params={"limit": 20})
            if not page["items"]:
                _err("no batch yet: start one with river batch RESOURCE_ID ... --wait")
                return 0
            _print_batches(console, page["items"])
            return 0
        state = _request("GET", api_url, f"/batches/{batch_id}")
        labels = _labels(api_url)
        _print_batch(console, state, labels)
        failed = sum(r["failed"] for r in state["resources"])
        if failed:
            errors = _request("GET", api_url, f"/batches/{batch_id}/errors", params={"limit": 5})
            console.print(f"\n{errors['total']} error(s); the first ones:")
            for e in errors["items"]:
                console.print(
                    f"  {e['resource_id']} {e['primary_key_value']} ({e['stage']}): {e['message']}",
                    markup=False,
                    highlight=False,
                )
            console.print(f"all of them: {api_url.rstrip('/')}/batches/{batch_id}/errors")
    except ApiError as error:
        return _fail(error)
    return 0


# --- helpers -----------------------------------------------------------------------------


def _health(api_url: str) -> dict[str, Any]:
    """GET /health, whose 503 (something is down) still carries the report."""
    return _request("GET", api_url, "/health", report_statuses=(503,))


def _print_health(console: Console, health: dict[str, Any]) -> None:
    """Each part of the pipeline on one line, as /health reports it (api/health.py)."""
    table = Table(title=f"health: {health.get('status')}", title_justify="left")
    for column in ("part", "state", "detail"):
        table.add_column(column)

    def row(part: str, report: Any, detail: str) -> None:
        ok = isinstance(report, dict) and report.get("ok")
        table.add_row(part, "[green]ok[/]" if ok else "[red]down[/]", detail)

    kafka, store = health.get("kafka", {}), health.get("store", {})
    row("kafka", kafka, f"{kafka.get('brokers', '?')} broker(s)" if kafka.get("ok") else "")
    row("store", store, str(store.get("backend", "")))
    mappings = health.get("mappings", {})
    row("mappings", mappings, f"{mappings.get('resources', '?')} resource(s)")
    for name, report in (health.get("services") or {}).items():
        if isinstance(report, dict):  # beside them: "ok", and "error" when unreadable
            row(f"service {name}", report, f"{report.get('processes', 0)} process(es)")
    for name, report in (health.get("connectors") or {}).items():
        if isinstance(report, dict):  # beside them: "ok", and "error" when unreadable
            tasks = ", ".join(f"task {t['id']} {t['state']}" for t in report.get("tasks", []))
            row(f"connector {name}", report, f"{report.get('state', '?')}; {tasks}")
    for name, report in (health.get("replication_slots") or {}).items():
        if isinstance(report, dict):  # beside them: "ok", and "error" when unreadable
            detail = f"{'active' if report.get('active') else 'inactive'},"
            detail += f" {report.get('retained_bytes', 0):,} bytes of WAL retained"
            row(f"slot {name}", report, detail)
    for part in ("services", "connectors", "replication_slots"):
        error = (health.get(part) or {}).get("error")
        if error:
            table.add_row(part, "[red]unknown[/]", str(error))
    console.print(table)
    for problem in health.get("problems") or []:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    console.print()


class _RateColumn(ProgressColumn):
    """Instances per second since the batch started (the `rate` field): steady, and
    shown even for a resource done between two polls (rich's own estimate needs
    two samples a few seconds apart)."""

    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        return Text(f"{rate:,.0f}/s" if rate else "-/s", style="progress.data.speed")


_login: Login | None = None


def _authorization() -> dict[str, str]:
    """The bearer token of `river login` or of RIVER_CLIENT_ID (cli/login.py), if any."""
    global _login
    if _login is None:
        _login = Login(Settings.load())
    try:
        token = _login.access_token()
    except LoginError as error:
        raise ApiError(str(error)) from None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _request(
    method: str, api_url: str, path: str, report_statuses: tuple[int, ...] = (), **kwargs: Any
) -> Any:
    """The JSON body of the answer; a problem is an ApiError with its sentence.
    `report_statuses`: error statuses whose body is the answer all the same."""
    url = api_url.rstrip("/") + path
    try:
        response = requests.request(method, url, timeout=30, headers=_authorization(), **kwargs)
    except requests.RequestException as error:
        raise ApiError(
            f"the API at {api_url} cannot be reached ({type(error).__name__}); "
            "is it running? (make run starts it)"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 and response.status_code not in report_statuses:
        message = _diagnostics(body) or f"{method} {path}: HTTP {response.status_code}"
        if response.status_code == 401:
            message += " (run `river login`, or set RIVER_CLIENT_ID and RIVER_CLIENT_SECRET)"
        raise ApiError(message)
    if body is None:
        raise ApiError(f"{method} {path}: the API answered something that is not JSON")
    return body


def _diagnostics(body: Any) -> str | None:
    """The sentence of an OperationOutcome."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or []
        texts = [i.get("diagnostics") for i in issues if isinstance(i, dict)]
        return "; ".join(t for t in texts if t) or None
    return None


def _labels(api_url: str) -> dict[str, str]:
    """resource id -> "Type label (id)", for humans; the bare id if /resources fails."""
    try:
        items = _request("GET", api_url, "/resources")["items"]
    except (ApiError, KeyError, TypeError):
        return {}
    labels = {}
    for item in items:
        name = " ".join(p for p in (item.get("resource_type"), item.get("label")) if p)
        labels[item["resource_id"]] = (
            f"{name} ({item['resource_id']})" if name else item["resource_id"]
        )
    return labels


def _detail(r: dict[str, Any]) -> str:
    text = f"extracted {r['extracted']}, loaded {r['loaded']}, failed {r['failed']}"
    if r.get("error"):
        return text + " [red]could not run[/]"
    if r["status"] == STALLED:
        return text + f" [yellow]stalled at {r.get('stalled_at_stage')}[/]"
    return text


def _status_of(r: dict[str, Any]) -> str:
    """A resource's status for the tables: a stalled one names its stage."""
    if r["status"] == STALLED and r.get("stalled_at_stage"):
        return f"{STALLED} ({r['stalled_at_stage']})"
    return str(r["status"])


def _print_batch(console: Console, state: dict[str, Any], labels: dict[str, str]) -> None:
    status = f"{state['status']} (stalled)" if state.get("stalled") else state["status"]
    title = f"batch {state['batch_id']}: {status}, {state['duration_seconds']:.1f} s"
    if state.get("retry_of"):
        title += f" (retry of {state['retry_of']})"
    table = Table(title=title, title_justify="left")
    # In a narrow terminal the resource names wrap, never the figures.
    table.add_column("resource", overflow="fold")
    table.add_column("status", no_wrap=True)
    for name in ("expected", "extracted", "transformed", "created", "updated", "failed"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in state["resources"]:
        table.add_row(
            labels.get(r["resource_id"], r["resource_id"]),
            _status_of(r),
            "?" if r["expected"] is None else str(r["expected"]),
            str(r["extracted"]),
            str(r["transformed"]),
            str(r["created"]),
            str(r["updated"]),
            str(r["failed"]),
        )
    console.print(table)
    for r in state["resources"]:
        if r.get("error"):
            console.print(f"{r['resource_id']} could not run: {r['error']}", markup=False)
        elif r["status"] == STALLED:
            # The reason names the stage: no progress for 412 s; stopped at stage ...
            console.print(
                f"{r['resource_id']} stalled: {r.get('reason')}", markup=False, highlight=False
            )


def _print_batches(console: Console, batches: list[dict[str, Any]]) -> None:
    table = Table(title="latest batches, newest first", title_justify="left")
    table.add_column("batch", no_wrap=True)
    for name in ("status", "started", "seconds", "resources"):
        table.add_column(name, no_wrap=True)
    for name in ("expected", "loaded", "failed"):
        table.add_column(name, justify="right", no_wrap=True)
    for b in batches:
        resources = b["resources"]
        expected = [r["expected"] for r in resources]
        table.add_row(
            b["batch_id"],
            f"{b['status']} (stalled)" if b.get("stalled") else b["status"],
            b["created_at"][:19].replace("T", " "),
            f"{b['duration_seconds']:.1f}",
            str(len(resources)),
            "?" if None in expected else str(sum(expected)),
            str(sum(r["loaded"] for r in resources)),
            str(sum(r["failed"] for r in resources)),
        )
    console.print(table)


def _summary(state: dict[str, Any]) -> int:
    resources = state["resources"]
    created = sum(r["created"] for r in resources)
    updated = sum(r["updated"] for r in resources)
    failed = sum(r["failed"] for r in resources)
    seconds = state["duration_seconds"]
    rate = (created + updated + failed) / seconds if seconds else 0.0
    _err(
        f"batch {state['batch_id']} {state['status']} in {seconds:.1f} s: "
        f"{created + updated} loaded ({created} created, {updated} updated), {failed} failed, "
        f"{rate:,.0f} instances/s"
    )
    if failed:
        _err(f"its errors: river status {state['batch_id']}")
    return 0 if state["status"] == "completed" else 1


def _stdout() -> Console:
    console = Console()
    if not console.is_terminal:
        # Piped or captured: rich would fold the tables (and the batch ids) into 80 columns.
        console.width = max(console.width, 160)
    return console


def _fail(error: Exception) -> int:
    _err(f"river: {error}")
    return 1


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
