"""Who is calling: turns request metadata into a Caller.

Transports hand over the request's metadata (gRPC metadata or HTTP headers) and get a `Caller` back,
or `Unauthenticated`. Nothing here knows about a transport, so gRPC and gRPC-Web share one object.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from taskservice.access.caller import ANONYMOUS_ADMIN, Caller
from taskservice.domain.errors import Unauthenticated
from taskservice.server.config import Settings, SettingsError

# The caller of the request being handled; set by the transport's access check for the request's task.

SECRET_FILE_NAME = "jwt-secret"
MIN_SECRET_BYTES = 32
_USER_ID_MAX = 256


class Authenticator(Protocol):
    def authenticate(self, metadata: Mapping[str, str]) -> Caller:
        """Return the caller, or raise Unauthenticated."""

    def known(self, metadata: Mapping[str, str]) -> Caller | None:
        """The caller when the credentials were verified before and still hold, checking nothing
        new (no signature): what a throttled client address may still use."""


class NoAuth:
    """`--auth none`: every caller is the admin user `anonymous` (local development only)."""

    def authenticate(self, metadata: Mapping[str, str]) -> Caller:
        return ANONYMOUS_ADMIN

    def known(self, metadata: Mapping[str, str]) -> Caller | None:
        return ANONYMOUS_ADMIN


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key that verifies tokens, and the one algorithm it is accepted with."""

    key: Any
    algorithm: str


class KeySet:
    """The keys tokens may be signed with, by `kid` (None: the key for tokens without a kid)."""

    def __init__(self, keys: Mapping[str | None, VerificationKey]) -> None:
        if not keys:
            raise SettingsError("no JWT verification key configured")
        self._keys = dict(keys)

    def for_header(self, header: Mapping[str, Any]) -> VerificationKey:
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if None in self._keys:
            return self._keys[None]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise Unauthenticated("the token's key id (kid) is not one this server knows", "unknown_key")


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    expires_at: float


class JwtAuthenticator:
    """Verifies `authorization: Bearer <JWT>`: signature, `exp` (required), `nbf`, `iss`/`aud` when
    configured. Verified tokens are remembered until they expire, so a busy client pays for one
    signature check rather than one per call."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str = "",
        audience: str = "",
        leeway: float = 30.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer or None
        self._audience = audience or None
        self._leeway = leeway
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    def authenticate(self, metadata: Mapping[str, str]) -> Caller:
        token = bearer_token(metadata)
        cached = self._cache.get(token)
        if cached is not None:
            if self._clock() <= cached.expires_at + self._leeway:
                self._cache.move_to_end(token)
                return cached.caller
            del self._cache[token]
        claims = self._verify(token)
        caller = _caller_from(claims, float(claims["exp"]) + self._leeway)
        self._cache[token] = _Verified(caller, float(claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return caller

    def known(self, metadata: Mapping[str, str]) -> Caller | None:
        try:
            token = bearer_token(metadata)
        except Unauthenticated:
            return None
        cached = self._cache.get(token)
        if cached is None or self._clock() > cached.expires_at + self._leeway:
            return None
        return cached.caller

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.for_header(header)
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                options={"require": ["exp", "sub"]},
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", "expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (nbf)", "not_yet_valid") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the token has no {error.claim!r} claim", "missing_claim") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token's issuer (iss) is not accepted", "wrong_issuer") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token's audience (aud) is not accepted", "wrong_audience") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated("the token's signing algorithm is not accepted", "bad_algorithm") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify", "bad_signature") from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError):
            raise Unauthenticated("the token is malformed or invalid", "malformed") from None


def bearer_token(metadata: Mapping[str, str]) -> str:
    value = metadata.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    if not value:
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'", "missing")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the authorization header must be 'Bearer <token>'", "malformed")
    return token.strip()


def _caller_from(claims: Mapping[str, Any], expires_at: float | None = None) -> Caller:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > _USER_ID_MAX or "\x00" in sub:
        raise Unauthenticated("the token's 'sub' claim must be a user id of 1-256 characters", "bad_subject")
    roles = claims.get("roles", ())
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list | tuple):
        roles = ()
    return Caller(sub, is_admin="admin" in roles, is_service="service" in roles, expires_at=expires_at)


# -- keys and tokens from settings ---------------------------------------------------------------


def generated_secret_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / SECRET_FILE_NAME


def uses_generated_secret(settings: Settings) -> bool:
    return not (settings.jwt_secret_file or settings.jwt_public_key_file or settings.jwt_jwks_file)


def signing_secret(settings: Settings) -> bytes:
    """The HS256 secret: from --jwt-secret-file, or generated once into the data dir (mode 0600)."""
    if settings.jwt_public_key_file or settings.jwt_jwks_file:
        raise SettingsError(
            "this server verifies tokens with a public key, so it cannot sign them; "
            "get tokens from the identity provider that holds the private key"
        )
    if settings.jwt_secret_file:
        secret = _read(settings.jwt_secret_file).strip()
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"{settings.jwt_secret_file}: a JWT secret must be at least {MIN_SECRET_BYTES} bytes"
            )
        return secret
    return _generated_secret(generated_secret_path(settings))


def _generated_secret(path: Path) -> bytes:
    """The secret in `path`, created on first use; the data folder is made private (0700)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(str(path)).strip()
    except OSError as error:
        raise SettingsError(
            f"cannot create the JWT secret {path}: {error.strerror}; the data folder must be writable "
            "the first time (or pass --jwt-secret-file)"
        ) from None
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    return _read(str(path)).strip()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error.strerror}") from None


def load_keys(settings: Settings) -> KeySet:
    chosen = [
        f for f in (settings.jwt_secret_file, settings.jwt_public_key_file, settings.jwt_jwks_file) if f
    ]
    if len(chosen) > 1:
        raise SettingsError(
            "choose one of --jwt-secret-file, --jwt-public-key-file and --jwt-jwks-file, not several"
        )
    if settings.jwt_public_key_file:
        key = _public_key(settings.jwt_public_key_file)
        return KeySet({None: VerificationKey(key, _algorithm_for(key, settings.jwt_public_key_file))})
    if settings.jwt_jwks_file:
        return _jwks(settings.jwt_jwks_file)
    return KeySet({None: VerificationKey(signing_secret(settings), "HS256")})


def _public_key(path: str) -> Any:
    try:
        return load_pem_public_key(_read(path))
    except ValueError:
        raise SettingsError(f"{path}: not a PEM public key") from None


def _algorithm_for(key: Any, source: str) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SettingsError(f"{source}: RSA keys must have at least 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise SettingsError(f"{source}: only RSA (RS256) and P-256 (ES256) public keys are supported")


def _jwks(path: str) -> KeySet:
    try:
        document = json.loads(_read(path))
        entries = document["keys"]
    except (ValueError, KeyError, TypeError):
        raise SettingsError(f"{path}: not a JWKS document (expected {{'keys': [...]}})") from None
    keys: dict[str | None, VerificationKey] = {}
    for entry in entries:
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            raise SettingsError(f"{path}: a key could not be read") from None
        algorithm = _algorithm_for(jwk.key, path)
        if entry.get("alg") not in (None, algorithm):
            raise SettingsError(
                f"{path}: key {entry.get('kid')!r} has alg {entry['alg']!r}; expected {algorithm}"
            )
        keys[entry.get("kid")] = VerificationKey(jwk.key, algorithm)
    return KeySet(keys)


def load_authenticator(settings: Settings) -> Authenticator:
    if settings.auth == "none":
        return NoAuth()
    return JwtAuthenticator(
        load_keys(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
    )


def mint_token(
    settings: Settings, user: str, *, admin: bool = False, service: bool = False, ttl: float = 3600.0
) -> str:
    """A token for `user` signed with the server's HS256 secret (what `taskservice token` prints);
    `service` gives it the role that raises its open-stream quota."""
    if not user.strip() or len(user) > _USER_ID_MAX:
        raise SettingsError("the user id must be 1-256 characters")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, "exp": now + int(ttl)}
    roles = [role for role, wanted in (("admin", admin), ("service", service)) if wanted]
    if roles:
        claims["roles"] = roles
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, signing_secret(settings), algorithm="HS256")
