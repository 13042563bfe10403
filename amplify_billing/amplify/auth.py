"""Service-account access tokens from the Axway IdP (reference/amplify-api.md §1.1–1.3).

Two kinds of service account: a client secret (HTTP Basic on the token request) or a key pair (a
short-lived RS256 client assertion signed with the private key). Tokens carry no refresh token, so a
new one is requested once 80 % of ``expires_in`` has passed, as Axway's own SDK does.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from amplify_billing.amplify.wire import error_detail, json_body, unreachable
from amplify_billing.errors import AuthError, ConfigError, UnreachableError, UpstreamError
from amplify_billing.http import network_reason
from amplify_billing.http_limits import HttpLimitExceeded, HttpLimits, limit_error
from amplify_billing.settings import AmplifySettings

log = logging.getLogger(__name__)

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 60
# Share of a token's lifetime after which we fetch a new one (SDK authclient.go, expires_in*4/5).
RENEW_AFTER_FRACTION = 0.8
# Used only when the IdP omits expires_in; short so that a wrong guess costs a token, not a 401 storm.
FALLBACK_LIFETIME_SECONDS = 300.0

# (url, form fields, HTTP Basic credentials or None) -> the IdP's response, whatever its status.
TokenPost = Callable[[str, Mapping[str, str], tuple[str, str] | None], requests.Response]


def token_url(settings: AmplifySettings) -> str:
    return f"{settings.auth_url.rstrip('/')}/realms/{settings.realm}/protocol/openid-connect/token"


def key_id(private_key: RSAPrivateKey) -> str:
    """base64url (no padding) of SHA-256 over the DER public key, as the Go SDK's ComputeKIDFromDER."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def _load_private_key(settings: AmplifySettings) -> RSAPrivateKey:
    if settings.private_key is not None:
        pem = settings.private_key.reveal().encode()
    else:
        assert settings.private_key_file is not None
        try:
            pem = settings.private_key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"amplify.private_key_file: cannot read {settings.private_key_file}: {exc.strerror}"
            ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # never echo the PEM: the message names the key, not its content
        raise ConfigError(
            "amplify.private_key_file: not an unencrypted PEM private key (PRIVATE KEY or RSA PRIVATE KEY)"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError("amplify.private_key_file: the key must be an RSA key (Amplify expects RS256)")
    return key


class TokenProvider:
    """Hands out a valid bearer token, fetching a new one only when the cached one is near its end."""

    def __init__(
        self,
        settings: AmplifySettings,
        session: requests.Session,
        *,
        clock: Callable[[], float] = time.time,
        post: TokenPost | None = None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clock = clock
        self._post = post or self._post_once
        self._url = token_url(settings)
        self._private_key: RSAPrivateKey | None = None
        self._kid = ""
        if settings.private_key is not None or settings.private_key_file is not None:
            # a key pair wins over a secret: it is the stronger credential
            self._private_key = _load_private_key(settings)
            self._kid = key_id(self._private_key)
        elif settings.client_secret is None:
            raise ConfigError("amplify: set client_secret or private_key_file for the service account")
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                self._token, lifetime = self._fetch(now)
                self._renew_at = now + lifetime * RENEW_AFTER_FRACTION
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token; the next ``token()`` fetches a new one (after a 401 from the API)."""
        with self._lock:
            self._token = None

    def credentials_hint(self) -> str:
        """What an operator should check when the credentials are refused (never the secret itself)."""
        if self._private_key is not None:
            return "check amplify.client_id and amplify.private_key_file (the key registered for that service account)"
        return "check amplify.client_id and amplify.client_secret"

    # ---- the token request ------------------------------------------------------------------

    def _form(self, now: float) -> tuple[dict[str, str], tuple[str, str] | None]:
        if self._private_key is None:
            assert self._settings.client_secret is not None
            return {"grant_type": "client_credentials"}, (
                self._settings.client_id,
                self._settings.client_secret.reveal(),
            )
        issued = int(now)
        claims = {
            "iss": self._settings.client_id,
            "sub": self._settings.client_id,
            "aud": self._url,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        assertion = jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self._kid})
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER_ASSERTION,
            "client_assertion": assertion,
        }
        return form, None

    def _fetch(self, now: float) -> tuple[str, float]:
        form, basic = self._form(now)
        response = self._post(self._url, form, basic)
        if response.status_code in (400, 401, 403):
            raise AuthError(
                f"the Axway IdP refused the service-account credentials (HTTP {response.status_code}"
                f"{_suffix(error_detail(response))}); {self.credentials_hint()}",
                system="amplify",
                status=response.status_code,
            )
        if response.status_code == 404:
            # no token endpoint there: the URL or the realm is wrong, and waiting will not help
            raise UnreachableError(
                f"the Axway IdP has no token endpoint at {self._url} (HTTP 404); check amplify.auth_url and "
                "amplify.realm (the auth URL of your region, e.g. https://login.axway.com/auth, realm Broker)",
                system="amplify",
                status=404,
            )
        if response.status_code != 200:
            raise UpstreamError(
                f"the Axway IdP answered HTTP {response.status_code} at {self._url}; try again later",
                system="amplify",
                status=response.status_code,
            )
        body: Any = json_body(response)
        access_token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamError(f"the Axway IdP at {self._url} answered without an access_token", system="amplify")
        expires_in = body.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0
            else FALLBACK_LIFETIME_SECONDS
        )
        log.debug("new Amplify access token, valid %.0f s", lifetime)
        return access_token, lifetime

    def _post_once(self, url: str, form: Mapping[str, str], basic: tuple[str, str] | None) -> requests.Response:
        """Used when no transport supplies its retrying sender (e.g. a one-off credentials check)."""
        try:
            return self._session.post(
                url,
                data=dict(form),
                auth=basic,
                headers={"Accept": "application/json"},
                timeout=HttpLimits.of("amplify", self._settings).timeouts,
            )
        except HttpLimitExceeded as exc:
            raise limit_error(exc, "Amplify", f"POST {url}") from None
        except requests.RequestException as exc:
            raise unreachable(url, network_reason(exc), self._settings) from None


def _suffix(detail: str) -> str:
    return f": {detail}" if detail else ""
