"""Kafka client settings (KAFKA_SECURITY_PROTOCOL, SASL, TLS): read once into Settings,
built into one client configuration (adapters/kafka.py, kafka_config) that every producer,
consumer and admin client of the services and the API starts from. No Kafka needed."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

import adapters.kafka as kafka
from adapters.kafka import (
    KAFKA_LOG,
    EventProducer,
    KafkaRefused,
    KafkaUnavailable,
    Refusals,
    ServiceConfig,
    kafka_config,
    refused_credentials,
    run_service,
)
from river.errors import ConfigurationError
from river.settings import Settings

CA = "/etc/ssl/certs/ca-certificates.crt"  # any PEM file librdkafka can load
PASSWORD = "s3cr3t-SCRAM-password"  # noqa: S105 (a test value)

SASL = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.hospital:9094",
    "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "fhir-river",
    "KAFKA_SASL_PASSWORD": PASSWORD,
}


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings.load with exactly `env` as the Kafka part of the environment."""
    for name in list(os.environ):
        if name.startswith("KAFKA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.load(env_file=None)


def test_the_default_is_plaintext_with_no_credentials(monkeypatch):
    settings = load(monkeypatch)
    assert kafka_config(settings) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
        "logger": KAFKA_LOG,
    }


def test_sasl_settings_reach_the_client_configuration(monkeypatch):
    settings = load(monkeypatch, **SASL)
    assert kafka_config(settings, **{"group.id": "g"}) == {
        "bootstrap.servers": "kafka.hospital:9094",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "fhir-river",
        "sasl.password": PASSWORD,
        "logger": KAFKA_LOG,
        "group.id": "g",
    }


def test_sasl_ssl_takes_the_ca_and_a_client_certificate(monkeypatch, tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = load(
        monkeypatch,
        **{
            **SASL,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SSL_CA_LOCATION": CA,
            "KAFKA_SSL_CERTIFICATE_LOCATION": str(cert),
            "KAFKA_SSL_KEY_LOCATION": str(key),
            "KAFKA_SSL_KEY_PASSWORD": "key-password",
        },
    )
    config = kafka_config(settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.username"] == "fhir-river"
    assert config["ssl.ca.location"] == CA
    assert config["ssl.certificate.location"] == str(cert)
    assert config["ssl.key.location"] == str(key)
    assert config["ssl.key.password"] == "key-password"


def test_ssl_alone_carries_no_sasl_and_plaintext_no_ssl(monkeypatch):
    ssl = kafka_config(
        load(
            monkeypatch,
            KAFKA_SECURITY_PROTOCOL="SSL",
            KAFKA_SSL_CA_LOCATION=CA,
            **{"KAFKA_SASL_USERNAME": "unused", "KAFKA_SASL_PASSWORD": "unused"},
        )
    )
    assert ssl["security.protocol"] == "SSL"
    assert ssl["ssl.ca.location"] == CA
    assert not [key for key in ssl if key.startswith("sasl.")]
    plain = kafka_config(load(monkeypatch, KAFKA_SSL_CA_LOCATION=CA))
    assert not [key for key in plain if key.startswith(("sasl.", "ssl."))]


def test_librdkafka_takes_the_configuration():
    """The keys are librdkafka's (a wrong one raises at once); nothing connects."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="fhir-river",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_ca_location=CA,
    )
    Producer(kafka_config(settings))
    AdminClient(kafka_config(settings))


def test_the_password_is_never_in_the_settings_repr(monkeypatch):
    settings = load(monkeypatch, **SASL, KAFKA_SSL_KEY_PASSWORD="key-secret")
    assert settings.kafka_sasl_password == PASSWORD
    assert PASSWORD not in repr(settings)
    assert "key-secret" not in repr(settings)
    assert "fhir-river" in repr(settings)


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "TLS"},
            "setting KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT,"
            " SASL_SSL, not 'TLS'",
        ),
        (
            {**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "setting KAFKA_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512,"
            " not 'GSSAPI'",
        ),
        (
            {**SASL, "KAFKA_SASL_PASSWORD": ""},
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs KAFKA_SASL_PASSWORD (the Kafka"
            " account FHIR River authenticates as)",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            " (the Kafka account FHIR River authenticates as)",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nowhere/ca.pem"},
            "setting KAFKA_SSL_CA_LOCATION: no such file /nowhere/ca.pem",
        ),
    ],
)
def test_a_setting_that_cannot_work_is_one_sentence(monkeypatch, env, sentence):
    with pytest.raises(ConfigurationError) as error:
        load(monkeypatch, **env)
    assert str(error.value) == sentence
    assert PASSWORD not in str(error.value)


# --- every client of the services and the API takes it -----------------------------------


class Recorder:
    """Stands for a confluent_kafka client class: records the configuration it gets."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []

    def __call__(self, config: dict[str, Any]) -> Any:
        self.configs.append(config)
        return _Client()


class _Client:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: [] if name in ("consume", "assignment") else 0


def carries_the_security(config: dict[str, Any]) -> bool:
    return (
        config["bootstrap.servers"] == "kafka.hospital:9094"
        and config["security.protocol"] == "SASL_PLAINTEXT"
        and config["sasl.mechanism"] == "SCRAM-SHA-512"
        and config["sasl.username"] == "fhir-river"
        and config["sasl.password"] == PASSWORD
    )


def test_the_producer_and_the_service_loop_take_the_settings(monkeypatch):
    settings = load(monkeypatch, **SASL)
    producers, consumers = Recorder(), Recorder()
    monkeypatch.setattr(kafka, "Producer", producers)
    monkeypatch.setattr(kafka, "Consumer", consumers)
    EventProducer(settings)

    class Stop:
        def is_set(self) -> bool:
            return True

    run_service(settings, ServiceConfig("loader", ("transform",)), lambda m, o: None, Stop())
    assert len(producers.configs) == 2 and len(consumers.configs) == 1
    for config in producers.configs + consumers.configs:
        assert carries_the_security(config), config
    assert consumers.configs[0]["group.id"] == "fhir-river-loader"
    assert producers.configs[0]["acks"] == "all"


def test_the_api_admin_client_and_producer_take_the_settings(monkeypatch):
    import api.services

    settings = load(monkeypatch, **SASL)
    admins, producers = Recorder(), Recorder()
    monkeypatch.setattr(api.services, "AdminClient", admins)
    monkeypatch.setattr(kafka, "Producer", producers)

    class NoMappings:
        mappings = None

    river = api.services.Services(settings, NoMappings(), store=None)  # type: ignore[arg-type]
    river.kafka_admin()
    river.producer()
    assert carries_the_security(admins.configs[0])
    assert carries_the_security(producers.configs[0])
    assert "logger" in admins.configs[0]
    # The API masks the password wherever it would show.
    assert PASSWORD in river.secrets


def test_topic_creation_takes_the_settings(monkeypatch):
    settings = load(monkeypatch, **SASL)
    monkeypatch.setattr(kafka, "wait_for_leaders", lambda admin, names: None)

    class Created:
        def create_topics(self, new, operation_timeout):
            return {}

    admins_made = []

    def admin(config):
        admins_made.append(config)
        return Created()

    monkeypatch.setattr(kafka, "AdminClient", admin)
    kafka.ensure_topics(settings, ["a"], 3)
    assert carries_the_security(admins_made[0])


# --- Kafka refusing the credentials -------------------------------------------------------


def authentication_error() -> KafkaError:
    return KafkaError(
        KafkaError._AUTHENTICATION,
        "SASL authentication error: Authentication failed during authentication due to invalid"
        " credentials with SASL mechanism SCRAM-SHA-512",
    )


def test_a_refusal_is_one_sentence_naming_the_account_not_the_password(monkeypatch):
    settings = load(monkeypatch, **SASL)
    sentence = refused_credentials(settings, authentication_error())
    assert sentence == (
        "Kafka at kafka.hospital:9094 refused the credentials of KAFKA_SASL_USERNAME=fhir-river"
        " (SCRAM-SHA-512): SASL authentication error: Authentication failed during"
        " authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512;"
        " check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    )
    assert PASSWORD not in sentence
    # Kafka down is no refusal: the services wait for it.
    assert refused_credentials(settings, KafkaError(KafkaError._TRANSPORT, "down")) is None


def test_refusals_keep_the_refusal_and_pass_other_errors_on(monkeypatch):
    settings = load(monkeypatch, **SASL)
    others: list[KafkaError] = []
    refusals = Refusals(settings, others.append)
    refusals(KafkaError(KafkaError._TRANSPORT, "down"))
    refusals.check()  # nothing refused yet
    refusals(authentication_error())
    with pytest.raises(KafkaRefused) as error:
        refusals.check()
    assert isinstance(error.value, KafkaUnavailable)  # the API answers 503 with it
    assert "refused the credentials of KAFKA_SASL_USERNAME=fhir-river" in str(error.value)
    assert [e.code() for e in others] == [KafkaError._TRANSPORT]


def test_a_service_whose_credentials_are_refused_stops_saying_so(monkeypatch, caplog):
    settings = load(monkeypatch, **SASL)
    made: list[dict[str, Any]] = []

    class RefusingConsumer(_Client):
        def __init__(self, config: dict[str, Any]) -> None:
            made.append(config)
            self.config = config

        def consume(self, *args: Any) -> list:
            self.config["error_cb"](authentication_error())  # as librdkafka calls it
            return []

    monkeypatch.setattr(kafka, "Consumer", RefusingConsumer)
    monkeypatch.setattr(kafka, "Producer", Recorder())

    class Never:
        def is_set(self) -> bool:
            return False

    with caplog.at_level("INFO", "river"), pytest.raises(SystemExit) as stopped:
        run_service(settings, ServiceConfig("loader", ("transform",)), lambda m, o: None, Never())
    assert stopped.value.code == 1
    last = caplog.records[-1]
    assert last.levelname == "ERROR"
    assert last.getMessage().startswith(
        "loader stops: Kafka at kafka.hospital:9094 refused the credentials of"
        " KAFKA_SASL_USERNAME=fhir-river (SCRAM-SHA-512)"
    )
    assert PASSWORD not in caplog.text


def test_settings_made_in_code_are_checked_too():
    settings = dataclasses.replace(Settings(), kafka_security_protocol="SASL_PLAINTEXT")
    with pytest.raises(
        ConfigurationError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    ):
        kafka_config(settings)
