"""The loader's credentials for a FHIR server (adapters/store/fhir_server.py), end to end:
OAuth 2 client credentials from the local Keycloak, and basic auth, through a hospital's
API gateway (fhir_gateway.py: an authenticating reverse proxy in a thread of this
process) in front of the local HAPI FHIR. Nothing is mocked: the gateway checks each
bearer token's signature against Keycloak's JWKS, its issuer, audience and expiry, and
forwards to the real HAPI only what carries good credentials.

The api, extractor and transformer run once for the module (FHIR_SERVER_URL: HAPI
itself); the loader is started for each test with the credentials it tries, pointed at
the gateway, so the gateway sees the loader's requests only. The source is a scratch
database of a few synthetic patients with the example mapping; HAPI is not emptied
(other modules share it): what a batch wrote is known from the gateway's records and
read back from HAPI by id.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from test.conftest import (
    ISSUER,
    KEYCLOAK,
    master_admin_token,
    scripts_client,
)
from test.e2e.conftest import SERVICES, Pipeline
from test.e2e.fhir_gateway import FhirGateway
from test.e2e.test_hapi import (
    HAPI,
    RESOURCES,
    TYPES,
    but_meta,
    example_into_hapi,
    skip_without_hapi,
)

PATIENTS = 20
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
AUDIENCE = "fhir-gateway"  # what the gateway demands in `aud` (an audience mapper adds it)
LIFESPAN = 10  # seconds: the test client's access tokens
STALLED_AFTER = 4  # the API's STALLED_AFTER_SECONDS here: a refused batch shows stalled soon
BASIC_USER = "river-loader"
BASIC_PASSWORD = f"basic-{uuid.uuid4().hex}"
CREDENTIALS = (
    "FHIR_SERVER_TOKEN_URL",
    "FHIR_SERVER_CLIENT_ID",
    "FHIR_SERVER_CLIENT_SECRET",
    "FHIR_SERVER_SCOPE",
    "FHIR_SERVER_USERNAME",
    "FHIR_SERVER_PASSWORD",
)


@pytest.fixture(scope="module", autouse=True)
def stack() -> None:
    skip_without_hapi()
    try:
        answer = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=10)
        why = None if answer.status_code == 200 else f"status {answer.status_code}"
    except requests.RequestException as error:
        why = type(error).__name__
    if why is not None:
        pytest.skip(f"Keycloak does not answer at {ISSUER} ({why}): make start starts it")


@pytest.fixture(scope="module")
def gateway() -> Iterator[FhirGateway]:
    with FhirGateway(
        HAPI, issuer=ISSUER, audience=AUDIENCE, basic=(BASIC_USER, BASIC_PASSWORD)
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[str, str]]:
    """(client id, secret) of a confidential client of the realm made for this run:
    service account (client credentials), tokens of LIFESPAN seconds for AUDIENCE."""
    client_id = f"river-test-fhir-server-{uuid.uuid4().hex[:6]}"
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {master_admin_token()}"
    body = {
        "clientId": client_id,
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "serviceAccountsEnabled": True,
        "standardFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "attributes": {"access.token.lifespan": str(LIFESPAN)},
        "protocolMappers": [
            {
                "name": f"audience {AUDIENCE}",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {"included.custom.audience": AUDIENCE, "access.token.claim": "true"},
            }
        ],
    }
    made = admin.post(f"{KEYCLOAK}/admin/realms/fhir-river/clients", json=body, timeout=10)
    assert made.status_code == 201, made.text
    try:
        secret = admin.get(made.headers["Location"] + "/client-secret", timeout=10)
        assert secret.status_code == 200, secret.text
        yield client_id, secret.json()["value"]
    finally:
        admin.headers["Authorization"] = f"Bearer {master_admin_token()}"  # may have expired
        admin.delete(made.headers["Location"], timeout=10)
        admin.close()


@pytest.fixture(scope="module")
def example(tmp_path_factory, topic_prefix) -> Iterator[tuple[Pipeline, dict[str, dict]]]:
    """The pipeline but its loader, over a scratch source of PATIENTS patients, and
    resource id -> {FHIR id: the resource as `river preview` makes it, but meta}."""
    tmp = tmp_path_factory.mktemp("fhir-server-auth")
    with example_into_hapi(tmp, topic_prefix, "fhirauth", PATIENTS, seed=31) as (pipeline, engine):
        pipeline.env.update(
            {
                "STALLED_AFTER_SECONDS": str(STALLED_AFTER),
                **{name: "" for name in CREDENTIALS},  # whatever .env says
            }
        )
        previews = {
            resource_id: {o.resource["id"]: but_meta(o.resource) for o in engine.run(resource_id)}
            for resource_id in RESOURCES
        }
        try:
            pipeline.start("api", "extractor", "transformer")
            yield pipeline, previews
        finally:
            pipeline.close()


# --- helpers --------------------------------------------------------------------------------
def loader_through(pipeline: Pipeline, url: str, **credentials: str) -> None:
    """(Re)start the loader on FHIR_SERVER_URL=`url` with these FHIR_SERVER_* credentials
    (the others empty); the env of the other services stays as it was."""
    pipeline.stop("loader")
    before = dict(pipeline.env)
    pipeline.env.update({"FHIR_SERVER_URL": url, **{name: "" for name in CREDENTIALS}})
    pipeline.env.update(credentials)
    try:
        pipeline.start("loader")
    finally:
        pipeline.env.clear()
        pipeline.env.update(before)


def token_credentials(client_id: str, secret: str) -> dict[str, str]:
    return {
        "FHIR_SERVER_TOKEN_URL": TOKEN_URL,
        "FHIR_SERVER_CLIENT_ID": client_id,
        "FHIR_SERVER_CLIENT_SECRET": secret,
    }


def basic_credentials(password: str = BASIC_PASSWORD) -> dict[str, str]:
    return {"FHIR_SERVER_USERNAME": BASIC_USER, "FHIR_SERVER_PASSWORD": password}


def from_hapi(resource_type: str, ids: list[str]) -> dict[str, dict]:
    """id -> the resource HAPI holds (read from HAPI itself, by id)."""
    found: dict[str, dict] = {}
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        page = requests.get(
            f"{HAPI}/{resource_type}",
            params={"_id": ",".join(chunk), "_count": len(chunk)},
            headers={"Cache-Control": "no-cache"},
            timeout=60,
        )
        assert page.status_code == 200, page.text
        found.update({e["resource"]["id"]: e["resource"] for e in page.json().get("entry") or []})
    return found


def assert_landed(state: dict, written: list[str], previews: dict[str, dict]) -> None:
    """The batch completed with every instance loaded, each one written to HAPI through
    the gateway, and HAPI holds what preview makes."""
    assert state["status"] == "completed", state
    for c in state["resources"]:
        n = len(previews[c["resource_id"]])
        assert n > 0
        assert (c["expected"], c["loaded"], c["failed"]) == (n, n, 0), c
    through = set(written)
    for resource_id, expected in previews.items():
        resource_type = TYPES[resource_id]
        missing = {f"{resource_type}/{rid}" for rid in expected} - through
        assert not missing, f"{len(missing)} not written through the gateway: {sorted(missing)[:5]}"
        in_hapi = {rid: but_meta(r) for rid, r in from_hapi(resource_type, list(expected)).items()}
        assert in_hapi == expected, resource_id


def logs(pipeline: Pipeline) -> dict[str, str]:
    return {name: pipeline.log(name) for name in dict.fromkeys([*SERVICES, *pipeline.services])}


def assert_in_no_log(pipeline: Pipeline, *secrets: str) -> None:
    for name, text in logs(pipeline).items():
        for secret in secrets:
            assert secret not in text, f"a secret is in the {name} log"


def gateway_answer(gateway: FhirGateway, **headers: str) -> requests.Response:
    return requests.get(
        f"{gateway.url}/metadata", params={"_summary": "true"}, headers=headers, timeout=30
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- tests ------------------------------------------------------------------------------------
def test_the_gateway_lets_through_good_credentials_only(gateway, client):
    """What the other tests stand on: the gateway is no open door."""
    client_id, secret = client
    got = requests.post(
        TOKEN_URL, data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10
    )
    assert got.status_code == 200, got.text
    # The client's own lifespan (Keycloak rounds the seconds left: 9 or 10).
    assert LIFESPAN - 1 <= got.json()["expires_in"] <= LIFESPAN
    token = got.json()["access_token"]
    assert gateway_answer(gateway, **bearer(token)).status_code == 200
    assert gateway_answer(gateway, **basic(BASIC_USER, BASIC_PASSWORD)).status_code == 200

    # The claims changed, the signature kept: another client passing for this one.
    head, _, signature = token.split(".")
    claims = {**jwt.decode(token, options={"verify_signature": False}), "azp": "someone"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    scripts = requests.post(  # the realm's own client: a good token, for another audience
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        auth=(scripts_client()["RIVER_CLIENT_ID"], scripts_client()["RIVER_CLIENT_SECRET"]),
        timeout=10,
    )
    assert scripts.status_code == 200, scripts.text
    refused = {
        "no credentials": ({}, "no credentials"),
        "forged": (bearer(f"{head}.{payload}.{signature}"), "InvalidSignatureError"),
        "another issuer": (bearer(master_admin_token()), "invalid bearer token"),
        "another audience": (bearer(scripts.json()["access_token"]), "InvalidAudienceError"),
        "wrong password": (basic(BASIC_USER, "nope"), "wrong username or password"),
        "wrong user": (basic("someone", BASIC_PASSWORD), "wrong username or password"),
    }
    for what, (headers, why) in refused.items():
        answer = gateway_answer(gateway, **headers)
        assert answer.status_code == 401, (what, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome", what
        assert why in answer.json()["issue"][0]["diagnostics"], (what, answer.text)


def test_client_credentials_load_through_the_gateway_and_the_token_is_renewed(
    example, gateway, client
):
    pipeline, previews = example
    client_id, secret = client
    loader_through(pipeline, gateway.url, **token_credentials(client_id, secret))
    mark = gateway.mark()
    state = pipeline.wait(pipeline.batch(RESOURCES), timeout=90)
    first = gateway.since(mark)
    assert_landed(state, first.written, previews)
    assert first.tokens, "the gateway saw no bearer token"
    assert {claims["azp"] for claims in first.tokens.values()} == {client_id}
    assert {s.scheme for s in first.forwarded} == {"bearer"}
    assert first.refused == [], first.refused[:3]

    # Every token seen so far expires (the gateway refuses them now); the next batch
    # needs a new one.
    expires = max(claims["exp"] for claims in first.tokens.values())
    time.sleep(max(0.0, expires - time.time() + 1))
    for token in first.tokens:
        old = gateway_answer(gateway, **bearer(token))
        assert old.status_code == 401 and "ExpiredSignatureError" in old.text, old.text
    mark = gateway.mark()
    state = pipeline.wait(pipeline.batch(RESOURCES), timeout=90)
    second = gateway.since(mark)
    assert_landed(state, second.written, previews)
    assert second.tokens, "the second batch went through with no new token"
    assert not second.tokens.keys() & first.tokens.keys()
    assert all(claims["iat"] >= expires for claims in second.tokens.values())
    # Renewed before it expired: the gateway never had to refuse an expired token.
    assert second.refused == [], second.refused[:3]
    assert len(first.tokens) + len(second.tokens) >= 2
    assert_in_no_log(pipeline, secret, *first.tokens, *second.tokens)


def test_basic_auth_loads_through_the_gateway(example, gateway):
    pipeline, previews = example
    loader_through(pipeline, gateway.url, **basic_credentials())
    mark = gateway.mark()
    state = pipeline.wait(pipeline.batch(RESOURCES), timeout=90)
    seen = gateway.since(mark)
    assert_landed(state, seen.written, previews)
    assert {s.scheme for s in seen.forwarded} == {"basic"}
    assert seen.tokens == {} and seen.refused == []
    assert_in_no_log(pipeline, BASIC_PASSWORD)


@pytest.mark.parametrize("wrong", ["client secret", "basic password"])
def test_wrong_credentials_are_said_plainly_never_logged_and_nothing_is_lost(
    example, gateway, client, wrong
):
    """The loader refused: it says why (the server, the settings to check), writes no
    secret anywhere, and the batch does not complete; with the right credentials the
    same batch then completes, nothing lost."""
    pipeline, previews = example
    client_id, secret = client
    bad = f"wrong-{uuid.uuid4().hex}"
    if wrong == "client secret":
        refused, right = token_credentials(client_id, bad), token_credentials(client_id, secret)
    else:
        refused, right = basic_credentials(bad), basic_credentials()
    loader_through(pipeline, gateway.url, **refused)
    seen = len(pipeline.log("loader"))
    mark = gateway.mark()
    batch_id = pipeline.batch(RESOURCES)

    # Bounded: the API flags a resource stalled after STALLED_AFTER s without progress.
    deadline = time.monotonic() + STALLED_AFTER + 15
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = pipeline.request("GET", f"/batches/{batch_id}").json()
        if state["status"] != "running" or all(
            c["status"] == "stalled" for c in state["resources"]
        ):
            break
        time.sleep(0.5)
    assert state["status"] == "running" and state.get("stalled"), state
    for c in state["resources"]:
        assert c["status"] == "stalled", c
        # Extracted (and transformed), none loaded nor failed. The API names the stage
        # `transform` (its `transformed` counter moves when the loader writes), and
        # says nothing of the credentials: the loader's log does.
        assert c["extracted"] == c["expected"] > 0, c
        assert (c["loaded"], c["failed"]) == (0, 0), c
    errors = pipeline.request("GET", f"/batches/{batch_id}/errors").json()
    assert errors["items"] == [], errors  # refused is no instance's failure: it waits

    at_gateway = gateway.since(mark)
    assert at_gateway.forwarded == [] and at_gateway.written == []
    if wrong == "basic password":
        assert at_gateway.refused, "the gateway was never asked"
        assert {s.reason for s in at_gateway.refused} == {"wrong username or password"}
    else:
        assert at_gateway.refused == []  # no token, nothing sent

    said = pipeline.log("loader")[seen:]
    assert_in_no_log(pipeline, bad, secret, BASIC_PASSWORD)

    # The right credentials: the same batch completes, nothing lost nor failed.
    mark = gateway.mark()
    loader_through(pipeline, gateway.url, **right)
    state = pipeline.wait(batch_id, timeout=90)
    assert_landed(state, gateway.since(mark).written, previews)
    assert_in_no_log(pipeline, bad, secret, BASIC_PASSWORD)

    # What the loader said while refused (checked last: the rest holds either way).
    if wrong == "client secret":
        # No token: the token endpoint is named, and the settings of the client.
        assert [
            line
            for line in said.splitlines()
            if "the token endpoint at 127.0.0.1:8180/realms/fhir-river/" in line
            and "gave FHIR River no access token" in line
            and "(401 unauthorized_client)" in line
            and "FHIR_SERVER_CLIENT_SECRET" in line
        ], said[-3000:]
    else:
        where = gateway.url.removeprefix("http://")
        assert complaint(said, where, ("FHIR_SERVER_PASSWORD",)), said[-3000:]
    assert "cannot be reached" not in said, said[-3000:]  # it can: it refuses


def complaint(said: str, where: str, settings: tuple[str, ...]) -> list[str]:
    """The loader's log lines that say the FHIR server at `where` refuses its
    credentials, naming the settings to check: FhirServerClient._once's sentence, "the
    FHIR server at <where> refuses FHIR River's credentials (401): check
    FHIR_SERVER_TOKEN_URL, FHIR_SERVER_CLIENT_ID and its secret, or FHIR_SERVER_USERNAME
    and FHIR_SERVER_PASSWORD", or another that says as much."""
    return [
        line
        for line in said.splitlines()
        if f"the FHIR server at {where}" in line
        and "credentials" in line
        and all(setting in line for setting in settings)
    ]
