"""Settings, read once from the environment and `.env` (`.env.example` lists them all).

The environment wins over `.env`; what neither sets takes the default below,
which is the local stack's (DESIGN.md, Configuration).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from river.errors import ConfigurationError


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
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    kafka_topic_partitions: int = 3
    # The largest event (bytes, before compression) producers, broker, topics and
    # Kafka Connect all accept: one decision (KAFKA_MESSAGE_MAX_BYTES).
    kafka_message_max_bytes: int = 16 * 1024 * 1024
    kafka_connect_url: str = "http://127.0.0.1:8083"
    # GET /health answers 503 when a live source's replication slot keeps more WAL.
    replication_slot_max_bytes: int = 1024**3
    api_host: str = "127.0.0.1"
    api_port: int = 3000
    fhir_store_url: str = "postgresql://postgres:postgres@127.0.0.1:5432/fhirstore"
    mongo_bulk_size: int = 500
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

    @classmethod
    def load(cls, env_file: str | Path | None = ".env") -> Settings:
        """Settings from `env_file` (when it exists) overlaid by the environment."""
        env: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        env.update(os.environ)
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
            replication_slot_max_bytes=_read_int(
                env, "REPLICATION_SLOT_MAX_BYTES", cls.replication_slot_max_bytes
            ),
            api_host=_read(env, "API_HOST", cls.api_host),
            api_port=_read_int(env, "API_PORT", 3000),
            fhir_store_url=_read(env, "FHIR_STORE_URL", cls.fhir_store_url),
            mongo_bulk_size=_read_int(env, "MONGO_BULK_SIZE", 500),
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
        )
