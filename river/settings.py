"""Settings, read once from the environment and `.env` (`.env.example` lists them all).

The environment wins over `.env`; what neither sets takes the default below,
which is the local stack's (docs/operations.md, Settings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from river.errors import ConfigurationError


def environment(env_file: str | Path | None = ".env") -> dict[str, str]:
    """What the settings are read from: `env_file` (when it exists) overlaid by the
    environment. Logging reads LOG_LEVEL and LOG_FORMAT from it too (adapters/logs.py)."""
    env: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ)
    return env


def _read(env: dict[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value == "" else value


def _read_int(env: dict[str, str], name: str, default: int) -> int:
    text = _read(env, name, str(default))
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"setting {name} must be a whole number, not {text!r}") from None


@dataclass(frozen=True)
class FhirServerSettings:
    """A FHIR server as the target (FHIR_SERVER_*; adapters/store/fhir_server.py): where
    it is, how FHIR River logs in to it, how resources are sent. Checked when made."""

    url: str
    # OAuth 2 client credentials (an OIDC provider's token endpoint), or basic auth, or none.
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    scope: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    bundle_type: str = "transaction"
    bundle_size: int = 250
    concurrency: int = 2
    timeout: float = 60.0
    retries: int = 3

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ConfigurationError(
                f"setting FHIR_SERVER_URL must be an http:// or https:// base URL, not {self.url!r}"
            )
        if self.bundle_type not in ("transaction", "batch"):
            raise ConfigurationError(
                "setting FHIR_SERVER_BUNDLE_TYPE must be transaction or batch, "
                f"not {self.bundle_type!r}"
            )
        if self.bundle_size < 1 or self.concurrency < 1:
            raise ConfigurationError(
                "settings FHIR_SERVER_BUNDLE_SIZE and FHIR_SERVER_CONCURRENCY must be 1 or more"
            )
        if self.token_url and not (self.client_id and self.client_secret):
            raise ConfigurationError(
                "FHIR_SERVER_TOKEN_URL needs FHIR_SERVER_CLIENT_ID and FHIR_SERVER_CLIENT_SECRET"
                " (the client FHIR River logs in as, client credentials)"
            )
        if self.token_url and self.username:
            raise ConfigurationError(
                "set either FHIR_SERVER_TOKEN_URL (a bearer token) or FHIR_SERVER_USERNAME "
                "(basic auth) for the FHIR server, not both"
            )
        if bool(self.username) != bool(self.password):
            raise ConfigurationError(
                "basic auth needs both FHIR_SERVER_USERNAME and FHIR_SERVER_PASSWORD"
            )


def _fhir_server(env: dict[str, str]) -> FhirServerSettings | None:
    url = env.get("FHIR_SERVER_URL", "").strip()
    if not url:
        return None
    return FhirServerSettings(
        url=url.rstrip("/"),
        token_url=env.get("FHIR_SERVER_TOKEN_URL", ""),
        client_id=env.get("FHIR_SERVER_CLIENT_ID", ""),
        client_secret=env.get("FHIR_SERVER_CLIENT_SECRET", ""),
        scope=env.get("FHIR_SERVER_SCOPE", ""),
        username=env.get("FHIR_SERVER_USERNAME", ""),
        password=env.get("FHIR_SERVER_PASSWORD", ""),
        bundle_type=_read(env, "FHIR_SERVER_BUNDLE_TYPE", "transaction").lower(),
        bundle_size=_read_int(env, "FHIR_SERVER_BUNDLE_SIZE", FhirServerSettings.bundle_size),
        concurrency=_read_int(env, "FHIR_SERVER_CONCURRENCY", FhirServerSettings.concurrency),
        timeout=float(_read_int(env, "FHIR_SERVER_TIMEOUT", 60)),
        retries=_read_int(env, "FHIR_SERVER_RETRIES", FhirServerSettings.retries),
    )


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    kafka_topic_partitions: int = 3
    # The largest event (bytes, before compression) producers, broker, topics and
    # Kafka Connect all accept: one decision (KAFKA_MESSAGE_MAX_BYTES).
    kafka_message_max_bytes: int = 16 * 1024 * 1024
    kafka_connect_url: str = "http://127.0.0.1:8083"
    # --- Kafka security: every producer, consumer and admin client FHIR River makes takes
    # these (adapters/kafka.py, kafka_config). PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    # With SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, and the account's name and password.
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    # With SSL or SASL_SSL: the CA that signed the brokers' certificates (PEM; empty: the
    # system's), and a client certificate and key when the brokers ask for one (mTLS).
    kafka_ssl_ca_location: str = ""
    kafka_ssl_certificate_location: str = ""
    kafka_ssl_key_location: str = ""
    kafka_ssl_key_password: str = field(default="", repr=False)
    # GET /health answers 503 when a live source's replication slot keeps more WAL.
    replication_slot_max_bytes: int = 1024**3
    api_host: str = "127.0.0.1"
    api_port: int = 3000
    fhir_store_url: str = "postgresql://postgres:postgres@127.0.0.1:5432/fhirstore"
    mongo_bulk_size: int = 500
    # A FHIR server as the target (adapters/store/fhir_server.py): resources go to its REST
    # API, batch state stays in FHIR_STORE_URL. None (no FHIR_SERVER_URL): the store holds
    # the resources.
    fhir_server: FhirServerSettings | None = None
    # The API shows a resource of a running batch `stalled` when its counters have
    # not moved for this long (seconds; 0: never).
    stalled_after_seconds: int = 300
    mappings: str = "examples/mappings"
    pyrog_api_url: str = ""
    pyrog_login: str = ""
    pyrog_password: str = field(default="", repr=False)
    source_db_url: str = field(default="", repr=False)
    source_timezone: str = "+02:00"
    fhir_api_url: str = ""
    concept_maps: str = "examples/concept_maps"
    custom_scripts: str = ""
    extract_chunk_size: int = 5000
    live_sources: str = ""  # none: .env.example names the example's
    # Who may call the API (api/auth.py): `oidc` checks bearer tokens of OIDC_ISSUER;
    # `none` is for development on a loopback address only.
    api_auth: str = "oidc"
    oidc_issuer: str = "http://127.0.0.1:8180/realms/fhir-river"
    oidc_audience: str = "fhir-river"
    # Dotted path of the claim that lists the caller's roles (Keycloak's realm roles).
    oidc_roles_claim: str = "realm_access.roles"
    # Where the API fetches the issuer's keys, when not the issuer's own discovery
    # document says (a container reaching the provider by another name).
    oidc_jwks_url: str = ""
    # Seconds of clock difference tolerated between the provider and the API (exp, nbf).
    oidc_leeway_seconds: int = 30
    # The public client `river login` uses (device and password flows).
    oidc_cli_client_id: str = "river-cli"
    # A script's confidential client (client credentials): `river` then needs no login.
    river_client_id: str = ""
    river_client_secret: str = field(default="", repr=False)
    # The public client of the web console (authorization code + PKCE).
    oidc_console_client_id: str = "river-console"
    # Prometheus metrics (adapters/metrics.py): each on METRICS_HOST and its own port,
    # never the API's public port (0: not served).
    metrics_host: str = "127.0.0.1"
    metrics_port_api: int = 9100
    metrics_port_extractor: int = 9101
    metrics_port_transformer: int = 9102
    metrics_port_loader: int = 9103

    @classmethod
    def load(cls, env_file: str | Path | None = ".env") -> Settings:
        """Settings from `env_file` (when it exists) overlaid by the environment."""
        env = environment(env_file)
        return cls(
            kafka_bootstrap_servers=_read(
                env, "KAFKA_BOOTSTRAP_SERVERS", cls.kafka_bootstrap_servers
            ),
            kafka_topic_prefix=env.get("KAFKA_TOPIC_PREFIX", ""),
            kafka_topic_partitions=_read_int(env, "KAFKA_TOPIC_PARTITIONS", 3),
            kafka_message_max_bytes=_read_int(
                env, "KAFKA_MESSAGE_MAX_BYTES", cls.kafka_message_max_bytes
            ),
            kafka_connect_url=_read(env, "KAFKA_CONNECT_URL", cls.kafka_connect_url),
            # Kafka security (checked here: a service with a wrong one stops at start).
            **_kafka_security(env),
            replication_slot_max_bytes=_read_int(
                env, "REPLICATION_SLOT_MAX_BYTES", cls.replication_slot_max_bytes
            ),
            api_host=_read(env, "API_HOST", cls.api_host),
            api_port=_read_int(env, "API_PORT", 3000),
            fhir_store_url=_read(env, "FHIR_STORE_URL", cls.fhir_store_url),
            mongo_bulk_size=_read_int(env, "MONGO_BULK_SIZE", 500),
            fhir_server=_fhir_server(env),
            stalled_after_seconds=_read_int(
                env, "STALLED_AFTER_SECONDS", cls.stalled_after_seconds
            ),
            mappings=_read(env, "MAPPINGS", cls.mappings),
            pyrog_api_url=env.get("PYROG_API_URL", ""),
            pyrog_login=env.get("PYROG_LOGIN", ""),
            pyrog_password=env.get("PYROG_PASSWORD", ""),
            source_db_url=env.get("SOURCE_DB_URL", ""),
            source_timezone=_read(env, "SOURCE_TIMEZONE", cls.source_timezone),
            fhir_api_url=env.get("FHIR_API_URL", ""),
            concept_maps=env.get("CONCEPT_MAPS", cls.concept_maps),
            custom_scripts=env.get("CUSTOM_SCRIPTS", ""),
            extract_chunk_size=_read_int(env, "EXTRACT_CHUNK_SIZE", 5000),
            live_sources=env.get("LIVE_SOURCES", cls.live_sources),
            api_auth=_read(env, "API_AUTH", cls.api_auth).lower(),
            oidc_issuer=_read(env, "OIDC_ISSUER", cls.oidc_issuer).rstrip("/"),
            oidc_audience=_read(env, "OIDC_AUDIENCE", cls.oidc_audience),
            oidc_roles_claim=_read(env, "OIDC_ROLES_CLAIM", cls.oidc_roles_claim),
            oidc_jwks_url=env.get("OIDC_JWKS_URL", ""),
            oidc_leeway_seconds=_read_int(env, "OIDC_LEEWAY_SECONDS", cls.oidc_leeway_seconds),
            oidc_cli_client_id=_read(env, "OIDC_CLI_CLIENT_ID", cls.oidc_cli_client_id),
            river_client_id=env.get("RIVER_CLIENT_ID", ""),
            river_client_secret=env.get("RIVER_CLIENT_SECRET", ""),
            oidc_console_client_id=_read(env, "OIDC_CONSOLE_CLIENT_ID", cls.oidc_console_client_id),
            metrics_host=_read(env, "METRICS_HOST", cls.metrics_host),
            metrics_port_api=_read_int(env, "METRICS_PORT_API", cls.metrics_port_api),
            metrics_port_extractor=_read_int(
                env, "METRICS_PORT_EXTRACTOR", cls.metrics_port_extractor
            ),
            metrics_port_transformer=_read_int(
                env, "METRICS_PORT_TRANSFORMER", cls.metrics_port_transformer
            ),
            metrics_port_loader=_read_int(env, "METRICS_PORT_LOADER", cls.metrics_port_loader),
        )


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _kafka_security(env: dict[str, str]) -> dict[str, str]:
    """The Kafka security settings of `env`, checked: one sentence for what cannot work."""
    protocol = _read(env, "KAFKA_SECURITY_PROTOCOL", Settings.kafka_security_protocol).upper()
    mechanism = _read(env, "KAFKA_SASL_MECHANISM", Settings.kafka_sasl_mechanism).upper()
    found = {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": env.get("KAFKA_SASL_USERNAME", ""),
        "kafka_sasl_password": env.get("KAFKA_SASL_PASSWORD", ""),
        "kafka_ssl_ca_location": env.get("KAFKA_SSL_CA_LOCATION", ""),
        "kafka_ssl_certificate_location": env.get("KAFKA_SSL_CERTIFICATE_LOCATION", ""),
        "kafka_ssl_key_location": env.get("KAFKA_SSL_KEY_LOCATION", ""),
        "kafka_ssl_key_password": env.get("KAFKA_SSL_KEY_PASSWORD", ""),
    }
    check_kafka_security(Settings(**found))  # type: ignore[arg-type]
    return found


def check_kafka_security(settings: Settings) -> None:
    """ConfigurationError naming the Kafka security setting that cannot work."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigurationError(
            f"setting KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)},"
            f" not {settings.kafka_security_protocol!r}"
        )
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism.upper()
        if mechanism not in KAFKA_SASL_MECHANISMS:
            raise ConfigurationError(
                f"setting KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)},"
                f" not {settings.kafka_sasl_mechanism!r}"
            )
        missing = [
            name
            for name, value in (
                ("KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}"
                " (the Kafka account FHIR River authenticates as)"
            )
    if protocol in ("SSL", "SASL_SSL"):
        for name, path in (
            ("KAFKA_SSL_CA_LOCATION", settings.kafka_ssl_ca_location),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", settings.kafka_ssl_certificate_location),
            ("KAFKA_SSL_KEY_LOCATION", settings.kafka_ssl_key_location),
        ):
            if path and not Path(path).is_file():
                raise ConfigurationError(f"setting {name}: no such file {path}")
