"""Who may call the API, against the local stack's real Keycloak (realm fhir-river):
every route without a token, with expired, tampered, wrong-audience and foreign
tokens, and with each role; the audit trail those requests leave; the `river`
command's login flows; the refusal to run open on a non-loopback address.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import urljoin

import jwt
import orjson
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from adapters.kafka import EventProducer
from adapters.store import FhirStore, open_store
from api.app import create_app
from api.auth import ROUTE_ROLES
from cli.login import Login, LoginError, Tokens, TokenStore
from river.engine import Engine
from river.errors import ConfigurationError
from river.settings import Settings
from test.conftest import (
    CONCEPT_MAPS,
    ISSUER,
    KEYCLOAK,
    MIMIC_DEMO_MAPPING,
    ROOT,
    kafka_settings,
    kafka_topics,
    master_admin_token,
    scratch_database,
    scripts_client,
    scripts_settings,
)

FEAT_6 = "cktlnp0ji006e0mmzat7dwb98"  # a Patient resource of mimic-demo.json
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
AUDIENCE_MAPPER = {
    "name": "audience fhir-river",
    "protocol": "openid-connect",
    "protocolMapper": "oidc-audience-mapper",
    "config": {"included.custom.audience": "fhir-river", "access.token.claim": "true"},
}


def password_token(user: str, client_id: str = "river-cli") -> str:
    answer = requests.post(
        TOKEN_URL,
        data={
            "grant_type": "password",
            "client_id": client_id,
            "username": user,
            "password": f"{user}-password",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- the realm's test clients, made through Keycloak's admin API and removed after ---------


@pytest.fixture(scope="module")
def keycloak_admin() -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {master_admin_token()}"
    yield session
    session.close()


@pytest.fixture(scope="module")
def test_clients(keycloak_admin: requests.Session) -> Iterator[dict[str, str]]:
    """Two public clients: one whose tokens last 2 s, one without the API's audience."""
    run = uuid.uuid4().hex[:6]
    clients = {
        "short": {
            "clientId": f"river-test-short-{run}",
            "attributes": {"access.token.lifespan": "2"},
            "protocolMappers": [AUDIENCE_MAPPER],
        },
        "other": {"clientId": f"river-test-other-{run}"},
    }
    made = []
    base = f"{KEYCLOAK}/admin/realms/fhir-river/clients"
    for spec in clients.values():
        body = {"publicClient": True, "directAccessGrantsEnabled": True, **spec}
        answer = keycloak_admin.post(base, json=body, timeout=10)
        assert answer.status_code == 201, answer.text
        made.append(answer.headers["Location"])
    yield {name: spec["clientId"] for name, spec in clients.items()}
    for location in made:
        keycloak_admin.delete(location, timeout=10)


# --- the API with authentication on ---------------------------------------------------------


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with scratch_database("river_test_auth_store") as url:
        yield url


@pytest.fixture(scope="module")
def settings(store_url: str, mimic_demo_url: str) -> Iterator[Settings]:
    prefix = f"test-auth-{uuid.uuid4().hex[:8]}-"
    with kafka_topics(prefix):
        yield kafka_settings(
            kafka_topic_prefix=prefix,
            fhir_store_url=store_url,
            mappings=str(MIMIC_DEMO_MAPPING),
            concept_maps=str(CONCEPT_MAPS),
            source_db_url=mimic_demo_url,
            fhir_api_url="",
            pyrog_api_url="",
            api_auth="oidc",
            oidc_issuer=ISSUER,
            oidc_leeway_seconds=0,  # the 2-second tokens expire when they say
        )


@pytest.fixture(scope="module")
def store(settings: Settings) -> Iterator[FhirStore]:
    store = open_store(settings.fhir_store_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def app(settings: Settings, store: FhirStore) -> Iterator[Flask]:
    engine = Engine.from_settings(settings)
    yield create_app(settings, engine=engine, store=store, producer=EventProducer(settings))
    engine.close()


@pytest.fixture(scope="module")
def api(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    made = {role: password_token(role) for role in ("reader", "operator", "admin")}
    login = Login(scripts_settings())
    made["scripts"] = login.access_token() or ""
    return made


@pytest.fixture(scope="module")
def batch_id(api: FlaskClient, tokens: dict[str, str]) -> str:
    answer = api.post(
        "/batch",
        json={"resource_ids": [FEAT_6], "primary_key_values": ["10006"]},
        headers=bearer(tokens["operator"]),
    )
    assert answer.status_code == 200, answer.json
    return answer.json["batch_id"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def routes(batch: str) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(method, path, JSON body, least role) of every route but the liveness probe and
    the console's page and files (public: they hold no data)."""
    return [
        ("GET", "/health", None, "reader"),
        ("GET", "/openapi.json", None, "reader"),
        ("GET", "/resources", None, "reader"),
        ("GET", "/me", None, "reader"),
        ("GET", "/batches", None, "reader"),
        ("GET", f"/batches/{batch}", None, "reader"),
        ("GET", f"/batches/{batch}/errors", None, "reader"),
        ("GET", "/fhir/Patient", None, "reader"),
        ("GET", "/fhir/Patient/no-such-id", None, "reader"),
        ("POST", "/preview", {"resource_id": FEAT_6, "primary_key_values": ["10006"]}, "operator"),
        ("GET", f"/resources/{FEAT_6}/keys", None, "operator"),
        ("POST", "/batch", {"resource_ids": [FEAT_6], "primary_key_values": ["10011"]}, "operator"),
        ("POST", f"/batches/{batch}/retry", None, "operator"),
        ("DELETE", f"/batches/{uuid.uuid4().hex}", None, "operator"),
        ("GET", "/fhir/AuditEvent", None, "admin"),
        ("GET", "/no/such/route", None, "reader"),
    ]


RANK = {"reader": 0, "operator": 1, "scripts": 1, "admin": 2}


def test_the_roles_table_lists_every_route(app: Flask):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert endpoints <= set(ROUTE_ROLES), endpoints - set(ROUTE_ROLES)
    public = [endpoint for endpoint, role in ROUTE_ROLES.items() if role is None]
    # The console's page and files hold no data (its data come through the API's routes).
    assert public == ["alive", "console.page", "console.asset", "console.config"]


def test_every_route_without_a_token_is_401_with_a_bearer_challenge(api, batch_id):
    for method, path, body, _ in routes(batch_id):
        answer = api.open(path, method=method, json=body)
        assert answer.status_code == 401, (method, path, answer.json)
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="fhir-river"'
        issue = answer.json["issue"][0]
        assert (answer.json["resourceType"], issue["code"]) == ("OperationOutcome", "login")
        assert "river token" in issue["diagnostics"]
    assert api.get("/health/live").status_code == 200


@pytest.mark.parametrize("who", ["reader", "operator", "admin", "scripts"])
def test_each_role_may_what_the_table_says_and_no_more(api, batch_id, tokens, who):
    for method, path, body, least in routes(batch_id):
        answer = api.open(path, method=method, json=body, headers=bearer(tokens[who]))
        if RANK[who] >= RANK[least]:
            assert answer.status_code not in (401, 403), (who, method, path, answer.json)
        else:
            assert answer.status_code == 403, (who, method, path, answer.json)
            assert answer.json["issue"][0]["code"] == "forbidden"
            assert f"needs the role {least}" in answer.json["issue"][0]["diagnostics"]
            challenge = answer.headers["WWW-Authenticate"]
            assert 'error="insufficient_scope"' in challenge and f'scope="{least}"' in challenge


def test_allowed_requests_answer_their_data(api, batch_id, tokens):
    reader = bearer(tokens["reader"])
    assert api.get(f"/batches/{batch_id}", headers=reader).status_code == 200
    assert api.get("/fhir/Patient", headers=reader).json["resourceType"] == "Bundle"
    preview = api.post(
        "/preview",
        json={"resource_id": FEAT_6, "primary_key_values": ["10006"]},
        headers=bearer(tokens["operator"]),
    )
    assert preview.status_code == 200
    assert preview.json["instances"][0]["resourceType"] == "Patient"


def _status_and_issue(api: FlaskClient, token: str) -> tuple[int, str, str]:
    answer = api.get("/batches", headers=bearer(token))
    issue = answer.json["issue"][0] if answer.status_code >= 400 else {}
    return answer.status_code, issue.get("code", ""), issue.get("diagnostics", "")


def test_an_expired_token_is_refused(api, test_clients):
    token = password_token("admin", test_clients["short"])
    assert _status_and_issue(api, token)[0] == 200
    time.sleep(claims_of(token)["exp"] - time.time() + 1.5)
    answer = api.get("/batches", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json["issue"][0]["code"] == "expired"
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_a_token_for_another_audience_is_refused(api, test_clients):
    token = password_token("admin", test_clients["other"])
    assert "fhir-river" not in str(claims_of(token).get("aud"))
    status, code, text = _status_and_issue(api, token)
    assert (status, code) == (401, "security")
    assert "not meant for this API" in text


def test_a_tampered_token_is_refused(api, tokens):
    header, payload, signature = tokens["reader"].split(".")
    claims = claims_of(tokens["reader"])
    claims["realm_access"] = {"roles": ["admin"]}  # a reader making itself admin
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    status, code, text = _status_and_issue(api, f"{header}.{forged}.{signature}")
    assert (status, code) == (401, "security")
    assert "signature does not match" in text


def test_tokens_not_from_the_issuer_are_refused(api, tokens):
    # Signed with a secret (HS256): the alg-confusion trick, where the public key is the secret.
    claims = {**claims_of(tokens["admin"]), "exp": int(time.time()) + 300}
    hs256 = jwt.encode(claims, "any secret at all, 32 bytes or more", algorithm="HS256")
    status, code, _ = _status_and_issue(api, hs256)
    assert (status, code) == (401, "security")
    # Keycloak's own master realm: another issuer, another key.
    master = master_admin_token()
    assert _status_and_issue(api, master)[:2] == (401, "security")
    for header in ("Basic cmVhZGVyOnJlYWRlci1wYXNzd29yZA==", "Bearer", "Bearer not.a.jwt"):
        answer = api.get("/batches", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.json["issue"][0]["code"] == "security"


# --- the audit trail --------------------------------------------------------------------------


def audit_events(api: FlaskClient, admin_token: str) -> list[dict[str, Any]]:
    bundle = api.get("/fhir/AuditEvent?_count=1000", headers=bearer(admin_token)).json
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_reads_batches_and_previews_are_audited_with_who_what_and_outcome(api, batch_id, tokens):
    reader, operator = bearer(tokens["reader"]), bearer(tokens["operator"])
    api.get("/fhir/Patient/some-patient-id", headers=reader)
    api.get("/fhir/Patient?_tag=x", headers=reader)
    api.post(
        "/preview", json={"resource_id": FEAT_6, "primary_key_values": ["10006"]}, headers=operator
    )
    api.post(
        "/preview", json={"resource_id": FEAT_6, "primary_key_values": ["10006"]}, headers=reader
    )
    canceled = api.delete(f"/batches/{batch_id}", headers=operator)
    events = audit_events(api, tokens["admin"])

    def find(code: str, status: str, who: str) -> dict[str, Any]:
        found = [
            e
            for e in events
            if e["subtype"][0]["code"] == code
            and e["outcomeDesc"] == f"HTTP {status}"
            and e["agent"][0]["who"]["display"] == who
        ]
        assert found, (code, status, [(e["subtype"], e["outcomeDesc"]) for e in events])
        return max(found, key=lambda e: e["recorded"])

    reads = [
        e for e in events if e["entity"][0].get("what") == {"reference": "Patient/some-patient-id"}
    ]
    assert len(reads) == 1, reads
    read = reads[0]
    assert (read["action"], read["outcome"], read["outcomeDesc"]) == ("R", "4", "HTTP 404")
    assert read["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}
    ]
    assert read["agent"][0]["who"]["display"] == "reader"
    assert read["agent"][0]["who"]["identifier"] == {
        "system": ISSUER,
        "value": claims_of(tokens["reader"])["sub"],
    }
    search = find("search-type", "200", "reader")
    assert base64.b64decode(search["entity"][0]["query"]) == b"_tag=x"
    find("preview", "200", "operator")
    refused = find("preview", "403", "reader")
    assert refused["outcome"] == "4"
    started = [
        e["entity"]
        for e in events
        if e["subtype"][0]["code"] == "batch-start" and e["outcomeDesc"] == "HTTP 200"
    ]
    assert [
        {"description": "POST /batch"},
        {"what": {"identifier": {"value": batch_id}}, "description": "batch"},
    ] in started
    cancel = find("batch-cancel", str(canceled.status_code), "operator")
    assert cancel["action"] == "D"
    # The audit trail is the admins': a reader does not see it.
    assert api.get("/fhir/AuditEvent", headers=reader).status_code == 403


def test_an_audit_event_that_cannot_be_kept_withholds_the_answer(settings, tokens, store_url):
    # The same API over a store that refuses writes: the data read is not answered.
    class ReadOnly:
        def __init__(self, store: FhirStore) -> None:
            self._store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

        def record_audit(self, event: dict[str, Any]) -> None:
            from adapters.store import StoreUnavailable

            raise StoreUnavailable("the FHIR store cannot be reached")

    real = open_store(store_url)
    engine = Engine.from_settings(settings)
    try:
        app = create_app(settings, engine=engine, store=ReadOnly(real), producer=None)
        answer = app.test_client().get("/fhir/Patient", headers=bearer(tokens["reader"]))
        assert answer.status_code == 503
        assert "audit trail cannot be written" in answer.json["issue"][0]["diagnostics"]
        assert b"entry" not in answer.data
    finally:
        engine.close()
        real.close()


# --- settings ---------------------------------------------------------------------------------


def test_no_authentication_is_refused_off_loopback(store_url):
    for host in ("0.0.0.0", "10.1.2.3", "api.hospital.example"):
        with pytest.raises(ConfigurationError, match="API_AUTH=none .* loopback"):
            create_app(Settings(api_auth="none", api_host=host, fhir_store_url=store_url))
    with pytest.raises(ConfigurationError, match="API_AUTH must be oidc or none"):
        create_app(Settings(api_auth="off", fhir_store_url=store_url))


def test_the_api_process_refuses_to_start_open_on_all_interfaces():
    run = subprocess.run(
        [sys.executable, "-m", "api"],
        env={"PATH": "/usr/bin:/bin", "API_AUTH": "none", "API_HOST": "0.0.0.0", "API_PORT": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "API_AUTH=none leaves patient data open" in run.stderr
    assert "Traceback" not in run.stderr


# --- the `river` command's tokens ---------------------------------------------------------------


def test_river_login_with_a_password_keeps_a_token_that_is_renewed(tmp_path):
    settings = Settings(oidc_issuer=ISSUER)
    store = TokenStore(tmp_path / "token.json")
    login = Login(settings, store=store)
    assert login.access_token() is None
    login.with_password("operator", "operator-password")
    assert (tmp_path / "token.json").stat().st_mode & 0o777 == 0o600
    again = Login(settings, store=store)
    first = again.access_token()
    assert claims_of(first or "")["preferred_username"] == "operator"
    # Expired on disk: the refresh token gets a new one.
    saved = orjson.loads((tmp_path / "token.json").read_bytes())
    for entry in saved.values():
        entry["expires_at"] = time.time() - 1
    (tmp_path / "token.json").write_bytes(orjson.dumps(saved))
    renewed = Login(settings, store=store).access_token()
    assert renewed and renewed != first
    with pytest.raises(LoginError, match="Invalid user credentials"):
        login.with_password("operator", "wrong")


def test_river_token_and_login_commands(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RIVER_TOKEN_FILE": str(tmp_path / "token.json"),
        "OIDC_ISSUER": ISSUER,
    }

    def river(*args: str, stdin: str = "", extra: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "cli", *args],
            env={**env, **(extra or {})},
            cwd=tmp_path,  # no .env here
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = river("token")
    assert out.returncode == 1 and "not logged in: run `river login`" in out.stderr
    out = river("login", "--user", "reader", "--password-stdin", stdin="reader-password\n")
    assert out.returncode == 0, out.stderr
    out = river("token")
    assert out.returncode == 0
    assert claims_of(out.stdout.strip())["preferred_username"] == "reader"
    out = river("login", "--user", "reader", "--password-stdin", stdin="nope\n")
    assert out.returncode == 1 and "Invalid user credentials" in out.stderr
    assert "Traceback" not in out.stderr
    # Scripts: client credentials, no login needed.
    out = river("token", extra={**scripts_client(), "RIVER_TOKEN_FILE": str(tmp_path / "none")})
    assert claims_of(out.stdout.strip())["preferred_username"] == "service-account-river-scripts"
    assert river("logout").returncode == 0
    assert river("token").returncode == 1


def test_river_login_device_flow(tmp_path):
    """The device flow as a person does it: the command shows an address with its code,
    the person logs in there (here Keycloak's own forms, driven by requests)."""
    settings = Settings(oidc_issuer=ISSUER)
    login = Login(settings, store=TokenStore(tmp_path / "token.json"))
    shown: list[tuple[str, str]] = []

    def approve(address: str, code: str) -> None:
        shown.append((address, code))
        browser = _Browser()
        page = browser.get(address)
        page = browser.submit(page, {"username": "admin", "password": "admin-password"})
        if 'name="accept"' in page.text:  # the consent page
            page = browser.submit(page, {"accept": "Yes"})
        assert "Device Login Successful" in page.text or page.status_code == 200, page.text

    login.with_device(approve)
    assert shown and shown[0][1] in shown[0][0]
    token = login.access_token()
    assert claims_of(token or "")["preferred_username"] == "admin"


class _Browser:
    """Just enough of a browser for Keycloak's forms. Keycloak marks its cookies Secure,
    which browsers send to http://127.0.0.1 (a secure context) but requests does not:
    redirects are followed here, the cookies made sendable at each step."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def _follow(self, response: requests.Response) -> requests.Response:
        for _ in range(10):
            for cookie in self.session.cookies:
                cookie.secure = False
            if not response.is_redirect:
                return response
            location = urljoin(response.url, response.headers["Location"])
            response = self.session.get(location, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects")

    def get(self, url: str) -> requests.Response:
        return self._follow(self.session.get(url, allow_redirects=False, timeout=10))

    def submit(self, page: requests.Response, fields: dict[str, str]) -> requests.Response:
        action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        assert action, page.text[:2000]
        url = urljoin(page.url, unescape(action.group(1)))
        return self._follow(self.session.post(url, data=fields, allow_redirects=False, timeout=10))


def test_tokens_the_provider_forgot_count_as_not_logged_in(tmp_path):
    """Keycloak restarted or the session ended: `river` says to log in, not a refusal."""
    settings = Settings(oidc_issuer=ISSUER)
    store = TokenStore(tmp_path / "token.json")
    login = Login(settings, store=store)
    stale = Tokens("not-a-token", time.time() - 10, "not-a-refresh-token", None)
    store.save(login.key, stale)
    assert login.access_token() is None
    assert store.load(login.key) is None
