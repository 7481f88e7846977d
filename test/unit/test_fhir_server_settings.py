"""FHIR_SERVER_*: read once into `Settings.fhir_server`, and what cannot work is refused
at start with a sentence naming the setting."""

from __future__ import annotations

import os

import pytest

from river.errors import ConfigurationError
from river.settings import FhirServerSettings, Settings


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings.load with exactly `env` as the FHIR server part of the environment."""
    for name in list(os.environ):
        if name.startswith("FHIR_SERVER_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.load(env_file=None)


def test_no_url_is_no_fhir_server(monkeypatch):
    assert load(monkeypatch).fhir_server is None
    assert load(monkeypatch, FHIR_SERVER_URL="  ").fhir_server is None


def test_defaults_and_what_is_read(monkeypatch):
    server = load(monkeypatch, FHIR_SERVER_URL="https://fhir.example.org/r4/").fhir_server
    assert server == FhirServerSettings(url="https://fhir.example.org/r4")
    assert (server.bundle_type, server.bundle_size, server.concurrency) == ("transaction", 250, 2)
    server = load(
        monkeypatch,
        FHIR_SERVER_URL="http://hapi:8080/fhir",
        FHIR_SERVER_BUNDLE_TYPE="BATCH",
        FHIR_SERVER_BUNDLE_SIZE="100",
        FHIR_SERVER_CONCURRENCY="4",
        FHIR_SERVER_TIMEOUT="30",
        FHIR_SERVER_RETRIES="5",
        FHIR_SERVER_TOKEN_URL="https://idp.example.org/token",
        FHIR_SERVER_CLIENT_ID="fhir-river",
        FHIR_SERVER_CLIENT_SECRET="s3cret",
    ).fhir_server
    assert (server.bundle_type, server.bundle_size, server.concurrency) == ("batch", 100, 4)
    assert (server.timeout, server.retries, server.client_id) == (30.0, 5, "fhir-river")
    assert "s3cret" not in repr(server)


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"FHIR_SERVER_URL": "hapi:8080/fhir"}, "FHIR_SERVER_URL must be an http:// or https://"),
        ({"FHIR_SERVER_BUNDLE_TYPE": "collection"}, "FHIR_SERVER_BUNDLE_TYPE must be transaction"),
        ({"FHIR_SERVER_BUNDLE_SIZE": "0"}, "FHIR_SERVER_BUNDLE_SIZE and FHIR_SERVER_CONCURRENCY"),
        ({"FHIR_SERVER_CONCURRENCY": "many"}, "FHIR_SERVER_CONCURRENCY must be a whole number"),
        ({"FHIR_SERVER_TOKEN_URL": "https://idp/token"}, "needs FHIR_SERVER_CLIENT_ID"),
        ({"FHIR_SERVER_USERNAME": "river"}, "needs both FHIR_SERVER_USERNAME and"),
        (
            {
                "FHIR_SERVER_TOKEN_URL": "https://idp/token",
                "FHIR_SERVER_CLIENT_ID": "a",
                "FHIR_SERVER_CLIENT_SECRET": "b",
                "FHIR_SERVER_USERNAME": "river",
                "FHIR_SERVER_PASSWORD": "c",
            },
            "not both",
        ),
    ],
)
def test_what_cannot_work_is_refused_naming_the_setting(monkeypatch, env, said):
    env = {"FHIR_SERVER_URL": "http://127.0.0.1:8090/fhir", **env}
    with pytest.raises(ConfigurationError, match=said):
        load(monkeypatch, **env)
