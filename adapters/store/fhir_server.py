"""A FHIR server as the target: resources go to its REST API, batch state stays home.

    store = open_store(settings.fhir_store_url, fhir_server=settings.fhir_server)

With `FHIR_SERVER_URL` set, `open_store` wraps FHIR River's own store (PostgreSQL or
MongoDB) in a `FhirServerStore`: `load` and `delete` send Bundles of `PUT <type>/<id>`
and `DELETE <type>/<id>` entries to the server (transaction Bundles by default,
`FHIR_SERVER_BUNDLE_TYPE=batch` for servers that take no transactions), `read` and
`search` ask it; batch state (counters, errors, the audit trail) stays in the wrapped
store. The services never know which target runs.

What the server answers decides (README, Loading into a FHIR server):

- each entry's status tells created (201) from updated (200);
- an entry the server refuses (4xx, with its OperationOutcome) is an instance that
  fails with the server's message: a transaction refused whole is sent again as a
  batch Bundle so that every other entry lands and the refused ones are known;
  `ResourceRefused` is then raised, and the loader's loop runs the poll again one
  message at a time, so the refused instance fails alone;
- timeouts, connection errors, 429 and 5xx are transient: retried here with backoff
  (`FHIR_SERVER_RETRIES`), then `StoreUnavailable`, which the services wait out.

Nothing is counted twice: each key's last write (batch id, content hash, reading time)
is kept in the wrapped store (`written`), as the database stores keep it beside the
resource, in the same transaction as the counters it moved (`count_written`; on
PostgreSQL). A poll sent again after a failure or a crash finds what already landed and
counts it as a replay, not sent again. What a crash can still blur: a loader killed
after the server's answer and before that transaction sends those resources again, and
the server then answers 200, so they count as updated, not created (each counted once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from adapters.store import FhirStore, Loaded, ResourceRefused, StoreUnavailable
from adapters.store.common import CREATED, UPDATED, LoadPlan, keys_of, plan_load
from river.errors import RiverError
from river.settings import FhirServerSettings

log = logging.getLogger("river.fhir_server")

FHIR_JSON = "application/fhir+json"
# Read from FHIR River's own store, never from the target: the audit trail is FHIR
# River's record of who read what, kept where its batch state is.
OWN_TYPES = frozenset({"AuditEvent"})
# Resource types most others refer to go first in a Bundle (a batch Bundle's entries
# are written in order; a transaction resolves its references whatever the order).
FIRST_TYPES = ("Organization", "Location", "Practitioner", "Patient", "Encounter")
# 409: two writers of one resource at once (HAPI's version conflicts): tried again.
TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})

Key = tuple[str, str]  # (resource type, id)


class FhirServerClient:
    """HTTP to one FHIR server: a pooled session, its credentials, retries."""

    def __init__(self, settings: FhirServerSettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.session = requests.Session()
        pool = max(4, settings.concurrency * 2)
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Accept": FHIR_JSON})
        if settings.username:
            self.session.auth = (settings.username, settings.password)
        self._token: tuple[str, float] | None = None  # (access token, expires at)
        self._token_lock = threading.Lock()

    # --- requests -------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> requests.Response:
        """The server's answer, after retrying what is transient; StoreUnavailable when
        it stays so. 4xx answers (but 401, 408, 429) are returned to the caller."""
        data = orjson.dumps(body) if body is not None else None
        pause = 0.5
        attempt = 0
        while True:
            attempt += 1
            problem = self._once(method, path, data, params)
            if isinstance(problem, requests.Response):
                return problem
            if attempt > self.settings.retries:
                raise StoreUnavailable(problem)
            log.warning("%s; trying again in %.1f s", problem, pause)
            time.sleep(pause)
            pause = min(pause * 2, 8.0)

    def _once(
        self, method: str, path: str, data: bytes | None, params: dict[str, Any] | None
    ) -> requests.Response | str:
        """The answer, or a sentence saying why it is worth trying again."""
        url = f"{self.base}/{path}" if path else self.base
        where = self.where()
        headers = {"Content-Type": FHIR_JSON} if data is not None else {}
        try:
            headers.update(self._auth_header())
        except _TokenRefused as refused:
            return str(refused)
        try:
            answer = self.session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=self.settings.timeout,
            )
        except requests.Timeout:
            return f"the FHIR server at {where} did not answer within {self.settings.timeout:g} s"
        except requests.RequestException as error:
            return f"the FHIR server at {where} cannot be reached ({type(error).__name__})"
        if answer.status_code == 401 and self.settings.token_url:
            self._token = None  # expired or revoked early: a new one next time
        if answer.status_code in (401, 403):
            return (
                f"the FHIR server at {where} refuses FHIR River's credentials "
                f"({answer.status_code}): check FHIR_SERVER_TOKEN_URL, FHIR_SERVER_CLIENT_ID "
                "and its secret, or FHIR_SERVER_USERNAME and FHIR_SERVER_PASSWORD"
            )
        if answer.status_code in TRANSIENT_STATUSES:
            return f"the FHIR server at {where} answered {answer.status_code} ({_outcome(answer)})"
        return answer

    def where(self) -> str:
        return _where(self.base)

    def _auth_header(self) -> dict[str, str]:
        if not self.settings.token_url:
            return {}
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token[1]:
                self._token = self._fetch_token()
            return {"Authorization": f"Bearer {self._token[0]}"}

    def _fetch_token(self) -> tuple[str, float]:
        """An access token by the client credentials grant (RFC 6749, 4.4);
        _TokenRefused says why there is none."""
        form = {"grant_type": "client_credentials"}
        if self.settings.scope:
            form["scope"] = self.settings.scope
        endpoint = _where(self.settings.token_url)
        try:
            answer = requests.post(
                self.settings.token_url,
                data=form,
                auth=(self.settings.client_id, self.settings.client_secret),
                timeout=self.settings.timeout,
            )
        except requests.RequestException as error:
            raise _TokenRefused(
                f"the token endpoint at {endpoint} cannot be reached ({type(error).__name__}):"
                " check FHIR_SERVER_TOKEN_URL"
            ) from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        token = body.get("access_token") if isinstance(body, dict) else None
        if answer.status_code != 200 or not isinstance(token, str):
            # RFC 6749, 5.2: `error` is a code, never a secret (e.g. unauthorized_client).
            said = body.get("error") if isinstance(body, dict) else None
            raise _TokenRefused(
                f"the token endpoint at {endpoint} gave FHIR River no access token for client "
                f"{self.settings.client_id!r} ({answer.status_code}"
                f"{f' {said}' if isinstance(said, str) else ''}): check FHIR_SERVER_CLIENT_ID,"
                " FHIR_SERVER_CLIENT_SECRET and FHIR_SERVER_SCOPE"
            )
        try:
            lifetime = float(body.get("expires_in") or 300)
        except (TypeError, ValueError):
            lifetime = 300.0
        # Renewed 30 s before it expires, or at half its life for short-lived ones.
        return token, time.monotonic() + max(lifetime - 30, lifetime / 2, 1)

    def close(self) -> None:
        self.session.close()


@dataclass
class _Write:
    """One key's write in a `load` call: what is sent and who counts it."""

    key: Key
    resource: dict[str, Any]
    digest: str
    read_at: float | None
    index: int  # the item of the call the server's answer makes created or updated
    resource_id: str
    status: str = ""  # created, updated, or the server's refusal
    refused: str = ""


class FhirServerStore(FhirStore):
    """Resources on a FHIR server, batch state in `state` (FHIR River's own store)."""

    def __init__(self, settings: FhirServerSettings, state: FhirStore) -> None:
        self.settings = settings
        self.state = state
        self.client = FhirServerClient(settings)
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="fhir-server")

    # --- resources ----------------------------------------------------------------
    def load(
        self,
        batch_id: str,
        items: Sequence[tuple[str, dict[str, Any]]],
        read_at: Sequence[float | None] | None = None,
    ) -> list[Loaded]:
        if not items:
            return []
        keys = [(t, rid) for t, ids in keys_of(items).items() for rid in ids]
        known = self.state.written(keys)
        # The database stores' rule (replayed, superseded), judged against the record of
        # the writes; but created or updated is the server's answer (it may hold what
        # FHIR River never wrote, or have lost what it did).
        written = {key: last for key, last in known.items() if last[0] is not None}
        deleted = {key: at for key, (_, _, at) in known.items() if key not in written and at}
        plan = plan_load(batch_id, items, written, read_at, deleted)
        writes = self._writes_of(plan, items)
        failure: StoreUnavailable | None = None
        try:
            self._send_writes(writes)
        except StoreUnavailable as error:
            # What landed is counted and kept, so that the poll, tried again, finds it
            # replayed; the rest of this call counts nothing.
            failure = error
            plan.counts = defaultdict(Counter)
        for write in writes:
            if failure is None:
                plan.counts[write.resource_id][plan.loaded[write.index].action] -= 1
            if write.status:
                plan.counts[write.resource_id][write.status] += 1
                key = write.key
                plan.loaded[write.index] = Loaded(key[0], key[1], write.status)
        self.state.count_written(
            batch_id,
            plan.counters(),
            [(w.key, (batch_id, w.digest, w.read_at)) for w in writes if w.status],
        )
        if failure is not None:
            raise failure
        refused = [w for w in writes if w.refused]
        if refused:
            # The others landed (and are counted): the loader runs the poll again one
            # message at a time, they are replays then, and the refused one fails alone.
            raise ResourceRefused(refused[0].refused)
        return plan.loaded

    @staticmethod
    def _writes_of(plan: LoadPlan, items: Sequence[tuple[str, dict[str, Any]]]) -> list[_Write]:
        """What the plan writes, each key's last version, with the item whose action the
        server's answer decides: the key's first item of the call that is written."""
        deciding: dict[Key, int] = {}
        for index, loaded in enumerate(plan.loaded):
            key = (loaded.resource_type, loaded.id)
            if key in plan.writes and key not in deciding and loaded.action in (CREATED, UPDATED):
                deciding[key] = index
        return [
            _Write(key, resource, digest, version, deciding[key], items[deciding[key]][0])
            for key, (resource, digest, version) in plan.writes.items()
        ]

    def delete(
        self,
        batch_id: str,
        resource_id: str,
        resource_type: str,
        ids: Sequence[str],
        read_at: float | None = None,
    ) -> int:
        if not ids:
            return 0
        known = self.state.written([(resource_type, rid) for rid in ids])
        keep: list[str] = []
        for rid in ids:
            before = known.get((resource_type, rid))
            newest = before[2] if before is not None else None
            if read_at is not None and newest is not None and read_at < newest:
                continue  # read after this deletion: it stays
            keep.append(rid)
        deleted = 0
        for start in range(0, len(keep), self.settings.bundle_size):
            chunk = keep[start : start + self.settings.bundle_size]
            deletions = bundle(
                self.settings.bundle_type,
                [
                    {"request": {"method": "DELETE", "url": f"{resource_type}/{rid}"}}
                    for rid in chunk
                ],
            )
            answer = self._post_bundle(deletions)
            for rid, entry in zip(chunk, answer.get("entry") or [], strict=False):
                status = _status(entry)
                if status >= 400 and status not in (404, 410):
                    raise ResourceRefused(
                        f"the FHIR server refused to delete {resource_type}/{rid}: "
                        f"{_entry_outcome(entry)}"
                    )
                if status < 300 and _deleted_something(entry):
                    deleted += 1
        self.state.count_written(
            batch_id,
            {resource_id: {"deleted": deleted}} if deleted else {},
            [((resource_type, rid), (None, None, read_at)) for rid in keep],
        )
        return deleted

    def read(self, resource_type: str, id: str) -> dict[str, Any] | None:
        if resource_type in OWN_TYPES:
            return self.state.read(resource_type, id)
        answer = self.client.request("GET", f"{resource_type}/{id}")
        if answer.status_code in (404, 410):
            return None
        _check(answer, f"reading {resource_type}/{id}")
        return answer.json()

    def search(
        self,
        resource_type: str,
        tag: tuple[str, str] | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        if resource_type in OWN_TYPES:
            return self.state.search(resource_type, tag, count, offset)
        params: dict[str, Any] = {}
        if tag is not None:
            params["_tag"] = f"{tag[0]}|{tag[1]}" if tag[0] else tag[1]
        if count == 0:
            params["_summary"] = "count"
        else:
            # Pages by offset need an order (without one, HAPI's pages overlap); the
            # database stores page by id too.
            params.update(
                {"_count": count, "_offset": offset, "_total": "accurate", "_sort": "_id"}
            )
        answer = self.client.request("GET", resource_type, params=params)
        _check(answer, f"searching {resource_type}")
        body = answer.json()
        page = [entry["resource"] for entry in body.get("entry") or [] if "resource" in entry]
        total = body.get("total")
        if total is None:  # a server that does not count: what this page proves
            total = offset + len(page)
        return int(total), page

    # --- batch state: FHIR River's own store ------------------------------------------
    # Passed on as they come: the batch-state methods are the wrapped store's business
    # (set_expected, set_extracted and resource_failed go through _set_progress).
    def create_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.create_batch(*args, **kwargs)

    def add_counts(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.add_counts(*args, **kwargs)

    def add_extracted(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.add_extracted(*args, **kwargs)

    def _set_progress(self, *args: Any, **kwargs: Any) -> Any:
        return self.state._set_progress(*args, **kwargs)

    def record_errors(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.record_errors(*args, **kwargs)

    def cancel_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.cancel_batch(*args, **kwargs)

    def batch(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.batch(*args, **kwargs)

    def batches(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.batches(*args, **kwargs)

    def errors(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.errors(*args, **kwargs)

    def failed_instances(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.failed_instances(*args, **kwargs)

    def record_audit(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.record_audit(*args, **kwargs)

    def written(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.written(*args, **kwargs)

    def count_written(self, *args: Any, **kwargs: Any) -> Any:
        return self.state.count_written(*args, **kwargs)

    def ping(self) -> None:
        self.state.ping()
        answer = self.client.request("GET", "metadata", params={"_summary": "true"})
        if answer.status_code != 200:
            raise StoreUnavailable(
                f"the FHIR server at {self.client.where()} answered {answer.status_code} "
                "to GET metadata"
            )

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()
        self.state.close()

    # --- what is sent ------------------------------------------------------------------
    def _send_writes(self, writes: list[_Write]) -> None:
        """Send every write in Bundles (several at once), setting each one's status or
        refusal. StoreUnavailable when the server stays down: the writes whose Bundle
        landed have their status."""
        if not writes:
            return
        order = {name: i for i, name in enumerate(FIRST_TYPES)}
        writes.sort(key=lambda w: (order.get(w.key[0], len(order)), w.key))
        # At most FHIR_SERVER_BUNDLE_SIZE entries a Bundle, and a poll smaller than
        # CONCURRENCY full Bundles split evenly: the loader keeps up with the
        # transformer, so its polls are often small, and one Bundle at a time leaves
        # the server's other threads idle (benchmarks/hapi.py).
        size = min(self.settings.bundle_size, -(-len(writes) // self.settings.concurrency))
        chunks = [writes[i : i + size] for i in range(0, len(writes), size)]
        if len(chunks) == 1:
            self._send_chunk(chunks[0])
            return
        failure: BaseException | None = None
        for future in [self._pool.submit(self._send_chunk, chunk) for chunk in chunks]:
            try:
                future.result()
            except BaseException as error:  # noqa: BLE001 (the first one is raised)
                failure = failure or error
        if failure is not None:
            raise failure

    def _send_chunk(self, chunk: list[_Write], bundle_type: str = "") -> None:
        bundle_type = bundle_type or self.settings.bundle_type
        answer = self._post_bundle(
            bundle(bundle_type, [put_entry(w.resource) for w in chunk]), refusal=True
        )
        refusal = answer.get("_refused")
        if refusal is not None:
            if len(chunk) == 1:
                key = chunk[0].key
                chunk[0].refused = f"the FHIR server refused {key[0]}/{key[1]} ({refusal})"
            elif bundle_type == "transaction":
                # Refused whole: which entries? A batch Bundle says, entry by entry.
                self._send_chunk(chunk, "batch")
            else:
                # A batch Bundle refused whole (an entry the server cannot even parse):
                # halves, until the refused entries are alone.
                half = len(chunk) // 2
                self._send_chunk(chunk[:half], "batch")
                self._send_chunk(chunk[half:], "batch")
            return
        entries = answer.get("entry") or []
        if len(entries) != len(chunk):
            raise StoreUnavailable(
                f"the FHIR server at {self.client.where()} answered a Bundle of {len(chunk)} "
                f"entries with {len(entries)}"
            )
        for write, entry in zip(chunk, entries, strict=True):
            status = _status(entry)
            if status == 201:
                write.status = CREATED
            elif 200 <= status < 300:
                write.status = UPDATED
            elif status in TRANSIENT_STATUSES:
                raise StoreUnavailable(
                    f"the FHIR server at {self.client.where()} answered {status} for "
                    f"{write.key[0]}/{write.key[1]}"
                )
            else:
                write.refused = (
                    f"the FHIR server refused {write.key[0]}/{write.key[1]} "
                    f"({status}: {_entry_outcome(entry)})"
                )

    def _post_bundle(self, sent: dict[str, Any], refusal: bool = False) -> dict[str, Any]:
        """The server's response Bundle; with `refusal`, a Bundle refused whole gives
        {"_refused": the server's message}."""
        answer = self.client.request("POST", "", body=sent)
        if answer.status_code < 300:
            return answer.json()
        if refusal and 400 <= answer.status_code < 500:
            return {"_refused": f"{answer.status_code}: {_outcome(answer)}"}
        _check(answer, f"a {sent['type']} Bundle")
        return answer.json()


class _TokenRefused(Exception):
    """No access token: the sentence says why (never the secret)."""


def _where(url: str) -> str:
    """A URL as logs show it: host, port and path (no credentials, no query)."""
    parts = urlsplit(url)
    return f"{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def bundle(bundle_type: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction or batch Bundle of `entries` (benchmarks/hapi.py sends the same)."""
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}


def put_entry(resource: dict[str, Any]) -> dict[str, Any]:
    """The Bundle entry that writes `resource` under its own id (an update or a create)."""
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}


def _status(entry: dict[str, Any]) -> int:
    text = str((entry.get("response") or {}).get("status") or "0")
    try:
        return int(text.split()[0])
    except ValueError:
        return 0


def _entry_outcome(entry: dict[str, Any]) -> str:
    outcome = (entry.get("response") or {}).get("outcome") or entry.get("resource")
    return _diagnostics(outcome) or "no OperationOutcome"


def _outcome(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.reason or "no OperationOutcome"
    return _diagnostics(body) or answer.reason or "no OperationOutcome"


def _diagnostics(outcome: Any) -> str:
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    said = []
    for issue in outcome.get("issue") or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        if text and issue.get("severity") in ("error", "fatal", None):
            said.append(str(text))
    return "; ".join(said)[:1000]


def _deleted_something(entry: dict[str, Any]) -> bool:
    """HAPI answers a DELETE of nothing with 200 and "... deleted 0 resource(s)" or a
    warning; a server that does not say is taken at its word (deleted)."""
    outcome = (entry.get("response") or {}).get("outcome") or entry.get("resource")
    issues = outcome.get("issue") or [] if isinstance(outcome, dict) else []
    text = " ".join(str(issue.get("diagnostics") or "") for issue in issues).lower()
    return "deleted 0 resource" not in text and "not deleted" not in text


def _check(answer: requests.Response, what: str) -> None:
    if answer.status_code >= 400:
        raise RiverError(
            f"the FHIR server answered {answer.status_code} to {what}: {_outcome(answer)}"
        )
