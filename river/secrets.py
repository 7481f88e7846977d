"""Secret masking: the one module that hides passwords in text FHIR River shows.

Masking happens where a secret is known to be embedded, never by rewriting whole
answers: a driver's error message masked with the password of the URL it was given
(the source database, the FHIR store, a connector's source), Kafka Connect's errors
and traces, the API's log lines. Every secret becomes the same mask, `***`.

    mask_url_password(message, url)     # a driver's message, with that URL's password
    Secrets([password, ...]).mask(text)  # known secrets, in every form they take
    mask(text)                           # what any text may carry: URL passwords,
                                         # password=..., "secret": "..."
    mask_config(config)                  # a connector's config, secret-like keys masked

Each of them also masks what `mask` masks. Errors never quote a source value in the
first place (river/errors.py): masking is for passwords, not for patient data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

import orjson

MASK = "***"
# Shorter "secrets" would mask every other word of a text, hiding nothing worth it.
MIN_LENGTH = 3

# Keys whose values are secrets (Kafka Connect's and the connectors' naming habits).
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|pwd|secret|token|credential|api[._-]?key",
    re.IGNORECASE,
)
# `${provider:...}` (or Camel's RAW(${...})): resolved by Kafka Connect, safe to show.
_PLACEHOLDER = re.compile(r"^\$\{[A-Za-z0-9_.-]+:[^}]*\}$|^RAW\(\$\{[A-Za-z0-9_.-]+:[^}]*\}\)$")
# key=value, key: value, "key": "value", with a secret-like key (in messages and traces).
_SECRET_IN_TEXT = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:password|passwd|passphrase|pwd|secret|token|credential)"""
    r"""[\w.-]*["']?\s*[=:]\s*["']?)(?P<value>[^"'\s&,;)}\]]+)""",
    re.IGNORECASE,
)
# The password of scheme://user:password@host in a text.
_URL_PASSWORD = re.compile(
    r"""(?P<key>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@"']*:)(?P<value>[^@/\s"']+)(?=@)"""
)
_URL_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^@/?#]*)@")


def is_secret_key(key: str) -> bool:
    """Whether a setting or config key names a secret (`database.password`, `api_key`)."""
    return bool(_SECRET_KEY.search(key))


def is_placeholder(value: Any) -> bool:
    """`${provider:...}` (or Camel's RAW(${...})): resolved by Connect, safe to show."""
    return isinstance(value, str) and bool(_PLACEHOLDER.match(value.strip()))


def url_password(url: Any) -> str | None:
    """The password of `scheme://user:password@host...`, percent-decoded, if any.
    `url` may be a string or a SQLAlchemy URL."""
    password = getattr(url, "password", None)
    if password is not None and not isinstance(url, str):
        return str(password) or None
    match = _URL_USERINFO.match(url if isinstance(url, str) else "")
    if not match or ":" not in match.group(1):
        return None
    return unquote(match.group(1).split(":", 1)[1]) or None


def _raw_url_password(url: Any) -> str | None:
    """The password as the URL writes it (percent-encoded, maybe)."""
    match = _URL_USERINFO.match(url if isinstance(url, str) else "")
    if not match or ":" not in match.group(1):
        return None
    return match.group(1).split(":", 1)[1] or None


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == MASK or value.startswith("${") or value.startswith("RAW(${"):
        return match.group(0)  # a placeholder Connect resolves, or masked already
    return match.group("key") + MASK


def mask(text: str) -> str:
    """`text` with what any text may carry masked: the password of a URL
    (scheme://user:***@host) and the value of a secret-like key (password=***,
    "database.password": "***"); `${env:NAME}` placeholders are kept."""
    text = _SECRET_IN_TEXT.sub(_mask_value, text)
    return _URL_PASSWORD.sub(_mask_value, text)


class Secrets:
    """Known secrets, masked in every form they may take in a text: as they are,
    percent-encoded (in a URL) and JSON-escaped. `mask` also does what `mask()` does."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_LENGTH:
                continue
            forms |= {secret, quote(secret, safe=""), orjson.dumps(secret).decode()[1:-1]}
        # Longest first: a secret that contains another is masked whole.
        self._forms = sorted((f for f in forms if f), key=len, reverse=True)

    @classmethod
    def of_url(cls, url: Any) -> Secrets:
        """The password of a URL (a string or a SQLAlchemy URL), decoded and as written."""
        return cls([url_password(url), _raw_url_password(url)])

    def mask(self, text: str) -> str:
        text = mask(text)
        for secret in self._forms:
            text = text.replace(secret, MASK)
        return text

    def __contains__(self, text: str) -> bool:
        return any(secret in text for secret in self._forms)

    def __bool__(self) -> bool:
        return bool(self._forms)


def mask_url_password(text: str, url: Any) -> str:
    """A driver's message about `url`, on one line, with that URL's password masked
    (raw and percent-decoded) and whatever `mask` masks."""
    return " ".join(Secrets.of_url(url).mask(text).split())


def mask_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A connector's config with every secret-like value that is not a placeholder masked."""
    return {
        key: MASK
        if is_secret_key(key) and value not in ("", None) and not is_placeholder(value)
        else value
        for key, value in config.items()
    }


class MaskingFilter(logging.Filter):
    """Masks secrets in the records of the logger it is attached to, traceback included:
    a log line may quote a driver's message or a trace FHIR River did not word."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.secrets.mask(record.getMessage())
        record.args = None
        if record.exc_info:
            # Render the traceback now, masked; the handler then prints exc_text as is.
            record.exc_text = self.secrets.mask(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True


def install_log_filter(logger: logging.Logger, secrets: Secrets) -> None:
    """One MaskingFilter on `logger` (an app made again replaces the previous one)."""
    for existing in [f for f in logger.filters if isinstance(f, MaskingFilter)]:
        logger.removeFilter(existing)
    logger.addFilter(MaskingFilter(secrets))
