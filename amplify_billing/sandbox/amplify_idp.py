"""The Axway IdP of the Amplify emulator [reference §1.1–1.3]: ``client_credentials`` with the client secret (HTTP
Basic or form fields) or with an RS256 client assertion verified against a registered public key; refusals in
Keycloak's ``{"error", "error_description"}`` shape. It also keeps the tokens it issued, for the API routes' check.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from amplify_billing.sandbox.amplify_answers import idp_error, json_answer
from amplify_billing.sandbox.server import Request, Response

REALM = "Broker"
TOKEN_LIFETIME_SECONDS = 1800  # what the Axway IdP answers (reference §1.2)
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Clock skew tolerated on a client assertion's exp/iat, as identity providers allow a little.
ASSERTION_LEEWAY_SECONDS = 10


class IdentityProvider:
    """One service account (client id, and a secret or a public key) and the access tokens issued to it.

    Not thread-safe by itself: the emulator runs every handler under its lock."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        public_key_pem: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self._monotonic = monotonic
        self._public_key: RSAPublicKey | None = None
        if public_key_pem is not None:
            key = serialization.load_pem_public_key(public_key_pem.encode())
            if not isinstance(key, RSAPublicKey):
                raise ValueError("public_key_pem must be an RSA public key (client assertions are RS256)")
            self._public_key = key
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.tokens_issued = 0

    def valid(self, token: str) -> bool:
        expiry = self._tokens.get(token)
        return expiry is not None and expiry > self._monotonic()

    def revoke(self) -> None:
        self._tokens.clear()

    def token(self, request: Request) -> Response:
        if request.params.get("realm") != REALM:
            return idp_error(404, "Realm does not exist", f"realm {request.params.get('realm')!r} does not exist")
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return idp_error(400, "unsupported_grant_type", "Unsupported grant_type")
        if "client_assertion" in form or "client_assertion_type" in form:
            refused = self._check_assertion(request, form)
        else:
            refused = self._check_secret(request, form)
        if refused is not None:
            return refused
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self._monotonic() + TOKEN_LIFETIME_SECONDS
        self.tokens_issued += 1
        return json_answer(
            200,
            {
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "refresh_expires_in": 0,
                "token_type": "bearer",
                "not-before-policy": 0,
                "scope": "email profile",
            },
        )

    def _check_secret(self, request: Request, form: Mapping[str, str]) -> Response | None:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        authorization = request.header("Authorization") or ""
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return idp_error(400, "invalid_request", "malformed Basic credentials")
            raw_id, _, raw_secret = decoded.partition(":")
            # RFC 6749 §2.3.1 form-encodes both parts; clients that do not are accepted too
            client_id, secret = (
                (raw_id, raw_secret)
                if raw_id == self.client_id
                else (
                    unquote_plus(raw_id),
                    unquote_plus(raw_secret),
                )
            )
        if not client_id:
            return idp_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if client_id != self.client_id:
            return idp_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if not secret:
            return idp_error(401, "unauthorized_client", "Client secret not provided in request")
        if not hmac.compare_digest(secret.encode(), self._client_secret.encode()):
            return idp_error(401, "unauthorized_client", "Invalid client secret")
        return None

    def _check_assertion(self, request: Request, form: Mapping[str, str]) -> Response | None:
        def refuse(why: str) -> Response:
            return idp_error(401, "unauthorized_client", f"Client authentication with signed JWT failed: {why}")

        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            return idp_error(400, "invalid_request", "client_assertion_type must be " + JWT_BEARER_ASSERTION)
        if self._public_key is None:
            return refuse("no public key is registered for the client")
        realm_url = f"http://{request.header('Host') or '127.0.0.1'}/auth/realms/{REALM}"
        audiences = [realm_url, f"{realm_url}/protocol/openid-connect/token"]
        try:
            # exp and iat are checked against the wall clock: the tool signs with real time even when
            # the emulator's own clock is a virtual one
            claims = jwt.decode(
                form.get("client_assertion", ""),
                self._public_key,
                algorithms=["RS256"],
                audience=audiences,
                leeway=ASSERTION_LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            return refuse(str(exc) or type(exc).__name__)
        subject = claims.get("sub")
        if subject != self.client_id or form.get("client_id", subject) != subject:
            return idp_error(401, "invalid_client", "Invalid client or Invalid client credentials")
        if claims.get("iss") not in (subject, f"{JWT_BEARER_ASSERTION}:{subject}"):
            return refuse("issuer must be the client id")
        return None
