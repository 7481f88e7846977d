"""What every service does at start: logging, settings, the engine, the store."""

from __future__ import annotations

import gc
import logging
import os

from adapters.store import FhirStore, open_store
from river.engine import Engine
from river.errors import RiverError
from river.settings import Settings


def start(name: str, with_engine: bool = True) -> tuple[Settings, Engine | None, FhirStore]:
    """Settings, the mapping engine (unless the service needs none) and the store."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s",
    )
    try:
        settings = Settings.load()
        engine = Engine.from_settings(settings) if with_engine else None
        store = open_store(settings.fhir_store_url, bulk_size=settings.mongo_bulk_size)
    except RiverError as error:  # a setting or a mapping to fix: one sentence, no trace
        logging.getLogger("river").error("%s cannot start: %s", name, error)
        raise SystemExit(1) from None
    # What start-up made lives as long as the process: keep the collector off it.
    gc.freeze()
    return settings, engine, store
