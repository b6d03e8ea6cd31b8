"""etcd's `--auth-token`: `simple` (etcd's simple tokens, served by shim/api/servicer.py) or
`jwt,pub-key=PATH,priv-key=PATH,sign-method=METHOD[,ttl=DURATION]` (etcd 3.4's JWT tokens).

The flag is read as etcd's `decomposeOpts` reads it: a token type, then `NAME=VALUE` options split
at commas, each name once. JWT options (etcd's auth/options.go):
- sign-method: RS256, RS384, RS512, PS256, PS384, PS512 (RSA keys), ES256, ES384, ES512 (ECDSA
  keys on P-256, P-384, P-521) or HS256, HS384, HS512 (HMAC: the priv-key file's bytes are the
  secret; pub-key is not used);
- priv-key, pub-key: PEM files (PKCS#1, PKCS#8 or SEC1 private keys; SubjectPublicKeyInfo or
  PKCS#1 public keys, or a certificate). With a private key the node signs and verifies; with
  only a public key it verifies, and Authenticate fails with etcd's "auth: token signing
  attempted with verify-only key";
- ttl: a Go duration (default 5m): a token's `exp` is its making time plus ttl, in whole seconds.
Other names are ignored with a warning, as etcd does.

A token is a JWS over `{"exp": ..., "revision": ..., "username": ...}`: the user and the auth
revision at which the password was checked. It is self-contained: any node with the key verifies
it (signature, the configured algorithm, exp) without a table; the request it comes with is then
checked against the auth revision as any other (an older one: "revision of auth store is old").
Verification follows etcd's (golang-jwt 4): valid while the current Unix second is below `exp`
(a token without `exp`, or with exp 0, does not expire), `nbf` and `iat` are honoured, and the
claims must hold a string username and a numeric revision.

Errors in the flag or the files raise `AuthTokenError` with a one-line message.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import HMACAlgorithm

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 300.0  # etcd's DefaultTTL (5m)
INVALID_OPTS = "auth: invalid auth options"  # etcd's ErrInvalidAuthOpts
INVALID_METHOD = "auth: invalid auth signature method"  # ErrInvalidAuthMethod
MISSING_KEY = "auth: missing key data"  # ErrMissingKey
KEY_MISMATCH = "auth: public and private keys don't match"  # ErrKeyMismatch
VERIFY_ONLY = "auth: token signing attempted with verify-only key"  # ErrVerifyOnly
KNOWN_OPTIONS = ("sign-method", "pub-key", "priv-key", "ttl")
RSA_METHODS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_METHODS = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
HMAC_METHODS = ("HS256", "HS384", "HS512")
SIGN_METHODS = (*RSA_METHODS, *EC_METHODS, *HMAC_METHODS)
MAX_CACHED = 4096  # verified tokens kept (their claims), so a token's signature is checked once


class AuthTokenError(ValueError):
    pass


class _RawHMAC(HMACAlgorithm):
    """HMAC with the key file's bytes as they are (etcd's): PyJWT's refuses a secret that looks
    like a PEM key."""

    def prepare_key(self, key):
        return key


_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Go's time.ParseDuration, in seconds ("5m", "1h30m", "1.5s", "300ms", "0", "-1m"); None if
    `text` is not one."""
    sign, rest = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:] if text[:1] == "+" else text)
    if rest == "0":
        return 0.0
    pos, seconds = 0, 0.0
    for m in _GO_DURATION.finditer(rest):
        if m.start() != pos:
            return None
        seconds += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return sign * seconds if rest and pos == len(rest) else None


def decompose(text: str) -> tuple[str, dict[str, str]]:
    """etcd's decomposeOpts: the token type and its NAME=VALUE options."""
    kind, *opts = text.split(",")
    options: dict[str, str] = {}
    for opt in opts:
        pair = opt.split("=")
        if len(pair) != 2:
            raise AuthTokenError(f"--auth-token {text!r}: {INVALID_OPTS} ({opt!r} is not NAME=VALUE)")
        if pair[0] in options:
            raise AuthTokenError(f"--auth-token {text!r}: {INVALID_OPTS} ({pair[0]} is given twice)")
        options[pair[0]] = pair[1]
    return kind, options


def parse(text: str) -> "JwtTokens | None":
    """The token provider `--auth-token text` names: None for etcd's simple tokens, a JwtTokens
    for `jwt,...`; AuthTokenError for anything else."""
    kind, options = decompose(text)
    if kind == "simple":
        return None
    if kind != "jwt":
        raise AuthTokenError(f"--auth-token {text!r}: {INVALID_OPTS} (unknown token type {kind!r}; "
                             f"verikv serves simple and jwt)")
    unknown = sorted(k for k in options if k not in KNOWN_OPTIONS)
    if unknown:
        log.warning("--auth-token: unknown JWT options ignored: %s", ", ".join(unknown))
    ttl_s = DEFAULT_TTL_S
    if options.get("ttl"):
        ttl_s = parse_go_duration(options["ttl"])
        if ttl_s is None:
            raise AuthTokenError(f"--auth-token: {INVALID_OPTS} (ttl {options['ttl']!r} is not a duration "
                                 f"such as 5m)")
        if ttl_s < 1:
            raise AuthTokenError(f"--auth-token: {INVALID_OPTS} (ttl {options['ttl']!r}: a token lives "
                                 f"until its exp second, so the ttl must be 1s or more)")
    method = options.get("sign-method", "")
    if method not in SIGN_METHODS:
        raise AuthTokenError(f"--auth-token: {INVALID_OPTS}: {INVALID_METHOD} (sign-method {method!r}; one of "
                             f"{', '.join(SIGN_METHODS)})")
    priv_pem = _read(options, "priv-key")
    pub_pem = _read(options, "pub-key")
    if method in HMAC_METHODS:
        if not priv_pem:
            raise AuthTokenError(f"--auth-token: {MISSING_KEY} (sign-method {method} needs priv-key=PATH, "
                                 f"the file whose bytes are the HMAC secret)")
        return JwtTokens(method, priv_pem, priv_pem, ttl_s)
    want = rsa if method in RSA_METHODS else ec
    what = "RSA" if want is rsa else "ECDSA"
    priv = pub = None
    if priv_pem:
        try:
            priv = serialization.load_pem_private_key(priv_pem, password=None)
        except (ValueError, TypeError) as err:
            raise AuthTokenError(f"--auth-token: priv-key {options['priv-key']}: not a PEM {what} private key "
                                 f"without a password ({_first_line(err)})") from None
        if not isinstance(priv, (rsa.RSAPrivateKey if want is rsa else ec.EllipticCurvePrivateKey)):
            raise AuthTokenError(f"--auth-token: priv-key {options['priv-key']}: not an {what} private key "
                                 f"(sign-method {method})")
    if pub_pem:
        try:
            if b"CERTIFICATE" in pub_pem:
                pub = x509.load_pem_x509_certificate(pub_pem).public_key()
            else:
                pub = serialization.load_pem_public_key(pub_pem)
        except (ValueError, TypeError) as err:
            raise AuthTokenError(f"--auth-token: pub-key {options['pub-key']}: not a PEM {what} public key "
                                 f"or certificate ({_first_line(err)})") from None
        if not isinstance(pub, (rsa.RSAPublicKey if want is rsa else ec.EllipticCurvePublicKey)):
            raise AuthTokenError(f"--auth-token: pub-key {options['pub-key']}: not an {what} public key "
                                 f"(sign-method {method})")
    if priv is None and pub is None:
        raise AuthTokenError(f"--auth-token: {MISSING_KEY} (sign-method {method} needs priv-key=PATH and/or "
                             f"pub-key=PATH)")
    if priv is not None and pub is not None and priv.public_key().public_numbers() != pub.public_numbers():
        raise AuthTokenError(f"--auth-token: {KEY_MISMATCH} (priv-key {options['priv-key']}, "
                             f"pub-key {options['pub-key']})")
    if want is ec:
        curve = (priv or pub).curve
        if not isinstance(curve, EC_METHODS[method]):
            raise AuthTokenError(f"--auth-token: sign-method {method} needs a key on {EC_METHODS[method].name}, "
                                 f"not {curve.name}")
    return JwtTokens(method, priv, pub if priv is None else priv.public_key(), ttl_s)


def _read(options: dict[str, str], name: str) -> bytes:
    path = options.get(name, "")
    if not path:
        return b""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise AuthTokenError(f"--auth-token: {INVALID_OPTS}: {name} {path}: cannot read it: "
                             f"{err.strerror or err}") from None


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


class JwtTokens:
    """etcd's tokenJWT: make(user, revision) signs a token (VERIFY_ONLY without a signing key),
    info(token) -> (user, revision) of a valid one, None otherwise."""

    def __init__(self, method: str, signing_key, verifying_key, ttl_s: float = DEFAULT_TTL_S, clock=time.time):
        self.method = method
        self.ttl_s = ttl_s
        self._signing_key = signing_key
        self._verifying_key = verifying_key
        self._clock = clock
        self._jws = jwt.PyJWS(algorithms=[])
        self._jws.register_algorithm(method, _RawHMAC(getattr(HMACAlgorithm, "SHA" + method[2:]))
                                     if method in HMAC_METHODS else jwt.get_algorithm_by_name(method))
        self._cache: dict[bytes, tuple[str, int, float | None, float | None]] = {}

    @property
    def verify_only(self) -> bool:
        return self._signing_key is None

    def make(self, user: str, revision: int) -> str:
        if self._signing_key is None:
            raise AuthTokenError(VERIFY_ONLY)
        claims = {"exp": math.floor(self._clock() + self.ttl_s), "revision": revision, "username": user}
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        return self._jws.encode(payload, self._signing_key, algorithm=self.method)

    def info(self, token: bytes) -> tuple[str, int] | None:
        now = math.floor(self._clock())
        hit = self._cache.get(token)
        if hit is None:
            hit = self._verify(token)
            if hit is None:
                return None
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[token] = hit
        user, revision, exp, not_before = hit
        if exp is not None and now >= exp:
            return None
        if not_before is not None and now < not_before:
            return None
        return user, revision

    def _verify(self, token: bytes) -> tuple[str, int, float | None, float | None] | None:
        """The claims of a token signed with this key and method (exp and nbf are checked by the
        caller, at each use); None for any other."""
        try:
            payload = self._jws.decode(token, self._verifying_key, algorithms=[self.method])
            claims = json.loads(payload)
        except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):  # any input a client sends
            return None
        if not isinstance(claims, dict):
            return None
        user, revision = claims.get("username"), claims.get("revision")
        if not isinstance(user, str) or isinstance(revision, bool) or not isinstance(revision, (int, float)):
            return None
        if not 0 <= revision < 2**64 or revision != int(revision):
            return None
        times = []
        for name in ("exp", "nbf", "iat"):
            v = claims.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                return None  # golang-jwt: a time claim that is not a number fails
            times.append(v or None)  # 0: as if absent (golang-jwt)
        exp, nbf, iat = times
        if iat is not None and math.floor(self._clock()) < iat:
            return None  # issued in the future
        return user, int(revision), exp, nbf
