"""Connector files: the seed's `{"name": ..., "config": {...}}` documents of
kafka_connect_connectors/sources, read and checked.

    connector = load_file("kafka_connect_connectors/sources/mimic-postgres-cdc.json")
    connector.name, connector.config["topic.prefix"]

`river connectors push` sends them to Kafka Connect (adapters/connect.py); the
extractor reads them to know which topics a live source fills (river/live.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from river.errors import RiverError
from river.secrets import is_placeholder, is_secret_key

SOURCES_FOLDER = Path("kafka_connect_connectors") / "sources"


class ConnectorError(RiverError):
    """Connect refused a request or cannot be reached, or a connector file is unusable."""


# --- connector files -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorFile:
    path: Path
    name: str
    config: dict[str, str]


def default_files() -> list[Path]:
    """The connector files of kafka_connect_connectors/sources (of the current folder, else
    of this checkout)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        folder = base / SOURCES_FOLDER
        if folder.is_dir():
            return sorted(folder.glob("*.json"))
    raise ConnectorError(
        f"no folder {SOURCES_FOLDER} here nor in the checkout: name the connector files to push"
    )


def load_file(path: str | os.PathLike[str]) -> ConnectorFile:
    """A connector file `{"name": ..., "config": {...}}`, checked: a name, a config of
    plain values, and no literal secret (a `${env:NAME}` placeholder instead)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConnectorError(f"no connector file {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConnectorError(f"cannot read the connector file {path} ({error})") from None
    except json.JSONDecodeError as error:
        raise ConnectorError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    if not isinstance(document, dict):
        raise ConnectorError(f'{path} must hold an object {{"name": ..., "config": {{...}}}}')
    name, config = document.get("name"), document.get("config")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConnectorError(f'{path} has no usable "name" (a non-empty string without "/")')
    if not isinstance(config, dict) or not config:
        raise ConnectorError(f'{path} has no "config" object')
    if config.get("name", name) != name:
        raise ConnectorError(
            f'{path}: "config.name" ({config["name"]}) differs from "name" ({name}); drop one'
        )
    values: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict | list) or value is None:
            raise ConnectorError(f"{path}: {key} must be a string, number or boolean")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if is_secret_key(key) and text and not is_placeholder(text):
            raise ConnectorError(
                f"{path}: {key} is written literally; put the secret in Kafka Connect's"
                f" environment and write ${{env:NAME}} instead"
            )
        values[key] = text
    return ConnectorFile(path, name, values)
