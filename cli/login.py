"""Tokens for the `river` command: log in once, kept fresh, printed for curl.

    river login                          device flow: open the address shown, enter the code
    river login --user operator          password flow (the local stack's development users)
    RIVER_CLIENT_ID=... RIVER_CLIENT_SECRET=... river batch ...   client credentials (scripts)
    river token                          an access token, for curl:
                                         curl -H "Authorization: Bearer $(river token)" ...
    river logout

People log in with the public client OIDC_CLI_CLIENT_ID (`river-cli`) of OIDC_ISSUER;
scripts use a confidential client's credentials (the settings RIVER_CLIENT_ID and
RIVER_CLIENT_SECRET) and need no login. A person's tokens are kept in
RIVER_TOKEN_FILE (default ~/.config/fhir-river/token.json, mode 600) and the access
token is refreshed with the refresh token when it has less than a minute left.
Problems are `LoginError`s: one sentence naming the provider and what it said.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from river.errors import RiverError
from river.settings import Settings

_TIMEOUT = 10
_MARGIN = 60  # seconds: a token closer than this to its expiry is renewed first
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class LoginError(RiverError):
    """Logging in, or renewing a token, failed."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_at: float
    refresh_token: str | None = None
    refresh_expires_at: float | None = None

    @classmethod
    def from_answer(cls, answer: dict[str, Any], now: float) -> Tokens:
        refresh_in = answer.get("refresh_expires_in")
        return cls(
            access_token=answer["access_token"],
            expires_at=now + float(answer.get("expires_in", 60)),
            refresh_token=answer.get("refresh_token"),
            # Keycloak says 0 for offline tokens: they do not expire on their own.
            refresh_expires_at=now + float(refresh_in) if refresh_in else None,
        )

    def fresh(self, now: float) -> bool:
        return self.expires_at - _MARGIN > now

    def renewable(self, now: float) -> bool:
        if not self.refresh_token:
            return False
        return self.refresh_expires_at is None or self.refresh_expires_at - _MARGIN > now


class Provider:
    """The OpenID provider of `issuer`, its endpoints read from its discovery document."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer.rstrip("/")
        self._endpoints: dict[str, Any] | None = None

    def endpoint(self, name: str) -> str:
        if self._endpoints is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                answer = requests.get(url, timeout=_TIMEOUT)
                answer.raise_for_status()
                self._endpoints = answer.json()
            except (requests.RequestException, ValueError) as error:
                raise LoginError(
                    f"the identity provider {self.issuer} cannot be reached"
                    f" ({type(error).__name__}); is it running? (make start starts Keycloak)"
                ) from None
        value = (self._endpoints or {}).get(name)
        if not value:
            raise LoginError(f"the identity provider {self.issuer} offers no {name}")
        return str(value)

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        """POST to the token endpoint; the answer, or a LoginError with the provider's words."""
        answer = self._post(self.endpoint("token_endpoint"), form)
        if answer.status_code != 200:
            raise LoginError(f"{self.issuer} refused: {_reason(answer)}")
        return answer.json()

    def _post(self, url: str, form: dict[str, str]) -> requests.Response:
        try:
            return requests.post(url, data=form, timeout=_TIMEOUT)
        except requests.RequestException as error:
            raise LoginError(
                f"the identity provider {self.issuer} cannot be reached ({type(error).__name__})"
            ) from None

    def device_login(
        self, client_id: str, show: Callable[[str, str], None], timeout: float = 600
    ) -> dict[str, Any]:
        """The OAuth 2 device flow (RFC 8628): `show(address, code)`, then wait."""
        start = self._post(
            self.endpoint("device_authorization_endpoint"),
            {"client_id": client_id, "scope": "openid"},
        )
        if start.status_code != 200:
            raise LoginError(f"{self.issuer} refused the device login: {_reason(start)}")
        device = start.json()
        show(
            device.get("verification_uri_complete") or device["verification_uri"],
            device["user_code"],
        )
        interval = float(device.get("interval", 5))
        deadline = time.monotonic() + min(timeout, float(device.get("expires_in", timeout)))
        form = {"grant_type": DEVICE_GRANT, "client_id": client_id}
        form["device_code"] = device["device_code"]
        while time.monotonic() < deadline:
            time.sleep(interval)
            answer = self._post(self.endpoint("token_endpoint"), form)
            if answer.status_code == 200:
                return answer.json()
            error = _json(answer).get("error")
            if error == "slow_down":
                interval += 5
            elif error != "authorization_pending":
                raise LoginError(f"{self.issuer} refused the device login: {_reason(answer)}")
        raise LoginError("the device login was not completed in time; run river login again")


class TokenStore:
    """A person's tokens on disk, one entry per issuer and client."""

    def __init__(self, path: Path | None = None) -> None:
        default = Path.home() / ".config" / "fhir-river" / "token.json"
        self.path = path or Path(os.environ.get("RIVER_TOKEN_FILE") or default)

    def load(self, key: str) -> Tokens | None:
        try:
            entry = json.loads(self.path.read_text()).get(key)
            return Tokens(**entry) if entry else None
        except (OSError, ValueError, TypeError):
            return None

    def save(self, key: str, tokens: Tokens | None) -> None:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            entries = {}
        if tokens is None:
            entries.pop(key, None)
        else:
            entries[key] = tokens.__dict__
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        # Created 600 from the start: a token is a password for as long as it lives.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out)
        tmp.replace(self.path)


class Login:
    """Where the `river` command gets its tokens: client credentials when set, else the
    tokens of `river login`, renewed when needed."""

    def __init__(self, settings: Settings, store: TokenStore | None = None) -> None:
        self.settings = settings
        self.provider = Provider(settings.oidc_issuer)
        self.store = store or TokenStore()
        self.key = f"{self.provider.issuer} {settings.oidc_cli_client_id}"
        self.client_id = settings.river_client_id
        self.client_secret = settings.river_client_secret
        self._cached: Tokens | None = None

    def with_password(self, user: str, password: str) -> Tokens:
        form = {"grant_type": "password", "client_id": self.settings.oidc_cli_client_id}
        form |= {"username": user, "password": password, "scope": "openid"}
        return self._keep(self.provider.token(form))

    def with_device(self, show: Callable[[str, str], None]) -> Tokens:
        answer = self.provider.device_login(self.settings.oidc_cli_client_id, show)
        return self._keep(answer)

    def logout(self) -> None:
        self.store.save(self.key, None)

    def access_token(self) -> str | None:
        """A valid access token, or None when not logged in (and no client credentials)."""
        now = time.time()
        if self._cached is not None and self._cached.fresh(now):
            return self._cached.access_token
        if self.client_id and self.client_secret:
            form = {"grant_type": "client_credentials", "client_id": self.client_id}
            form["client_secret"] = self.client_secret
            self._cached = Tokens.from_answer(self.provider.token(form), now)
            return self._cached.access_token
        tokens = self.store.load(self.key)
        if tokens is None:
            return None
        if not tokens.fresh(now):
            if not tokens.renewable(now):
                return None
            form = {"grant_type": "refresh_token", "client_id": self.settings.oidc_cli_client_id}
            form["refresh_token"] = tokens.refresh_token or ""
            try:
                tokens = self._keep(self.provider.token(form))
            except LoginError as error:
                if "cannot be reached" in str(error):
                    raise
                # The provider forgot the session (logged out, restarted, expired): the
                # tokens are worthless, so as good as not logged in.
                self.store.save(self.key, None)
                return None
        self._cached = tokens
        return tokens.access_token

    def _keep(self, answer: dict[str, Any]) -> Tokens:
        tokens = Tokens.from_answer(answer, time.time())
        self.store.save(self.key, tokens)
        self._cached = tokens
        return tokens


def _json(answer: requests.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(answer: requests.Response) -> str:
    body = _json(answer)
    text = body.get("error_description") or body.get("error")
    return str(text) if text else f"HTTP {answer.status_code}"
