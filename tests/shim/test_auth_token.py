"""`--auth-token` (shim/io/auth_token.py): etcd's flag syntax, its JWT options and their errors
(one line; `verikv serve` exits 2 before the node starts), and the tokens: made with the user, the
auth revision and exp; verified with the key and the configured method only; void after exp, with
a bad signature or from another key; claims checked as etcd's golang-jwt checks them."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from verikv.shim.io import auth_token
from verikv.shim.io.auth_token import AuthTokenError, JwtTokens

_BIN = Path(sys.executable).parent / "verikv"
VERIKV = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "verikv.cli"]
T0 = 1_800_000_000.0


def _pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt-keys")
    made = {"rsa": rsa.generate_private_key(65537, 2048), "rsa2": rsa.generate_private_key(65537, 2048),
            "ec": ec.generate_private_key(ec.SECP256R1()), "ec384": ec.generate_private_key(ec.SECP384R1())}
    files = {"dir": d}
    for name, key in made.items():
        (d / f"{name}.key").write_bytes(_pem_private(key))
        (d / f"{name}.pub").write_bytes(_pem_public(key))
        files[name] = str(d / f"{name}.key")
        files[name + "_pub"] = str(d / f"{name}.pub")
    (d / "hmac.secret").write_bytes(b"a shared secret\n")
    files["hmac"] = str(d / "hmac.secret")
    (d / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    files["garbage"] = str(d / "garbage.pem")
    return files


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def tokens(flag: str, keys, clock=None) -> JwtTokens:
    t = auth_token.parse(flag.format(**keys))
    if clock is not None:
        t._clock = clock
    return t


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_simple_is_no_jwt():
    assert auth_token.parse("simple") is None


@pytest.mark.parametrize("method,key", [("RS256", "rsa"), ("RS512", "rsa"), ("PS256", "rsa"), ("PS384", "rsa"),
                                        ("ES256", "ec"), ("ES384", "ec384"), ("HS256", "hmac"),
                                        ("HS512", "hmac")])
def test_a_token_names_its_user_and_revision_and_is_verified_with_the_key(keys, method, key):
    pub = "" if method.startswith("HS") else f",pub-key={{{key}_pub}}"
    clock = Clock()
    t = tokens(f"jwt,priv-key={{{key}}}{pub},sign-method={method}", keys, clock)
    token = t.make("alice", 7)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": method, "typ": "JWT"}
    assert claims_of(token) == {"username": "alice", "revision": 7, "exp": int(T0) + 300}  # ttl 5m
    assert t.info(token.encode()) == ("alice", 7)
    # a node with the same options (another process) takes it, with no table
    assert tokens(f"jwt,priv-key={{{key}}}{pub},sign-method={method}", keys, clock).info(token.encode()) == \
        ("alice", 7)


def test_a_token_expires_at_its_exp_second(keys):
    clock = Clock(T0 + 0.9)
    t = tokens("jwt,priv-key={rsa},pub-key={rsa_pub},sign-method=RS256,ttl=90s", keys, clock)
    token = t.make("root", 2).encode()
    assert claims_of(token.decode())["exp"] == int(T0) + 90
    clock.t = T0 + 89.99
    assert t.info(token) == ("root", 2)
    clock.t = T0 + 90  # golang-jwt: valid while now (whole seconds) < exp
    assert t.info(token) is None
    clock.t = T0 + 1000
    assert t.info(token) is None


def test_ttl_is_a_go_duration(keys):
    for text, seconds in [("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("2h", 7200), ("1m0.5s", 60.5)]:
        assert tokens(f"jwt,priv-key={{hmac}},sign-method=HS256,ttl={text}", keys).ttl_s == seconds


def test_a_bad_signature_another_key_or_another_method_is_refused(keys):
    t = tokens("jwt,priv-key={rsa},pub-key={rsa_pub},sign-method=RS256", keys)
    token = t.make("root", 2)
    head, body, sig = token.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert t.info(f"{head}.{body}.{flipped}".encode()) is None
    forged = dict(claims_of(token), username="eve")  # claims changed, signature kept
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert t.info(f"{head}.{forged_body}.{sig}".encode()) is None
    other = tokens("jwt,priv-key={rsa2},sign-method=RS256", keys).make("root", 2)
    assert t.info(other.encode()) is None
    # the same key under another RSA method, HS256 keyed with the public key, and alg none: refused
    assert t.info(tokens("jwt,priv-key={rsa},sign-method=PS256", keys).make("root", 2).encode()) is None
    pub = Path(keys["rsa_pub"]).read_bytes()
    hs = JwtTokens("HS256", pub, pub).make("root", 2)
    assert t.info(hs.encode()) is None
    none = jwt.encode({"username": "root", "revision": 2}, None, algorithm="none")
    assert t.info(none.encode()) is None
    nested = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).rstrip(b"=")  # a header too deep
    for junk in (b"", b"x", b"a.b", b"a.b.c", b"\xff\xfe.\x00.\x01", token.encode() + b".", nested + b".e30.x"):
        assert t.info(junk) is None


def test_claims_are_checked_as_golang_jwt_checks_them(keys):
    clock = Clock()
    t = tokens("jwt,priv-key={hmac},sign-method=HS256", keys, clock)
    secret = Path(keys["hmac"]).read_bytes()

    def signed(claims):
        return jwt.encode(claims, secret, algorithm="HS256").encode()

    assert t.info(signed({"username": "u", "revision": 3})) == ("u", 3)  # no exp: never expires
    assert t.info(signed({"username": "u", "revision": 3, "exp": 0})) == ("u", 3)  # exp 0: as if none
    assert t.info(signed({"username": "u", "revision": 3.0, "exp": T0 + 5})) == ("u", 3)
    assert t.info(signed({"username": "u", "revision": 3, "exp": "soon"})) is None
    assert t.info(signed({"username": "u", "revision": 3, "nbf": T0 + 5})) is None  # not valid yet
    assert t.info(signed({"username": "u", "revision": 3, "iat": T0 + 5})) is None  # issued in the future
    assert t.info(signed({"revision": 3})) is None  # etcd would fail on it too (no username)
    assert t.info(signed({"username": 5, "revision": 3})) is None
    assert t.info(signed({"username": "u", "revision": "3"})) is None
    assert t.info(signed({"username": "u", "revision": True})) is None
    assert t.info(signed({"username": "u", "revision": -1})) is None


def test_a_public_key_alone_verifies_but_cannot_sign(keys):
    signer = tokens("jwt,priv-key={ec},sign-method=ES256", keys)
    verifier = tokens("jwt,pub-key={ec_pub},sign-method=ES256", keys)
    assert verifier.verify_only and not signer.verify_only
    assert verifier.info(signer.make("root", 4).encode()) == ("root", 4)
    with pytest.raises(AuthTokenError, match="^auth: token signing attempted with verify-only key$"):
        verifier.make("root", 4)


BAD = [
    ("nope", "auth: invalid auth options (unknown token type 'nope'"),
    ("", "auth: invalid auth options (unknown token type ''"),
    ("jwt", "auth: invalid auth signature method (sign-method ''; one of RS256"),
    ("jwt,sign-method=RS256", "auth: missing key data (sign-method RS256 needs priv-key=PATH and/or pub-key=PATH)"),
    ("jwt,sign-method=HS256,pub-key={rsa_pub}", "auth: missing key data (sign-method HS256 needs priv-key=PATH"),
    ("jwt,priv-key={rsa},sign-method=XS256", "auth: invalid auth signature method (sign-method 'XS256'"),
    ("jwt,priv-key={rsa},sign-method=none", "auth: invalid auth signature method (sign-method 'none'"),
    ("jwt,priv-key={rsa},sign-method=EdDSA", "auth: invalid auth signature method (sign-method 'EdDSA'"),
    ("jwt,priv-key={dir}/missing.pem,sign-method=RS256", "priv-key {dir}/missing.pem: cannot read it: No such file"),
    ("jwt,pub-key={dir},sign-method=RS256", "pub-key {dir}: cannot read it: Is a directory"),
    ("jwt,priv-key={garbage},sign-method=RS256", "priv-key {garbage}: not a PEM RSA private key without a password"),
    ("jwt,priv-key={hmac},sign-method=RS256", "priv-key {hmac}: not a PEM RSA private key"),
    ("jwt,pub-key={hmac},sign-method=ES256", "pub-key {hmac}: not a PEM ECDSA public key or certificate"),
    ("jwt,priv-key={ec},sign-method=RS256", "priv-key {ec}: not an RSA private key (sign-method RS256)"),
    ("jwt,pub-key={rsa_pub},sign-method=ES256", "pub-key {rsa_pub}: not an ECDSA public key (sign-method ES256)"),
    ("jwt,priv-key={rsa},pub-key={rsa2_pub},sign-method=RS256", "auth: public and private keys don't match"),
    ("jwt,priv-key={ec384},sign-method=ES256", "sign-method ES256 needs a key on secp256r1, not secp384r1"),
    ("jwt,priv-key={rsa},sign-method=RS256,ttl=5", "auth: invalid auth options (ttl '5' is not a duration"),
    ("jwt,priv-key={rsa},sign-method=RS256,ttl=0", "the ttl must be 1s or more"),
    ("jwt,priv-key={rsa},sign-method=RS256,ttl", "auth: invalid auth options ('ttl' is not NAME=VALUE)"),
    ("jwt,priv-key={rsa},sign-method=RS256,sign-method=RS256", "(sign-method is given twice)"),
]


@pytest.mark.parametrize("flag,message", BAD)
def test_bad_auth_token_flags_are_refused_with_one_line(keys, flag, message):
    with pytest.raises(AuthTokenError) as err:
        auth_token.parse(flag.format(**keys))
    assert message.format(**keys) in str(err.value) and "\n" not in str(err.value)


def test_unknown_jwt_options_are_ignored_with_a_warning(keys, caplog):
    t = tokens("jwt,priv-key={hmac},sign-method=HS256,colour=blue", keys)
    assert t.info(t.make("u", 1).encode()) == ("u", 1)
    assert "unknown JWT options ignored: colour" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("flag,message", [BAD[2], BAD[3], BAD[8], BAD[10], BAD[15]])
def test_serve_exits_2_with_one_line_for_a_bad_auth_token(tmp_path, keys, flag, message):
    res = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", "127.0.0.1:29090", "--client-listen",
                                   "127.0.0.1:29091", "--data-dir", str(tmp_path / "d"),
                                   "--auth-token", flag.format(**keys)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("verikv serve: --auth-token")
    assert message.format(**keys) in res.stderr
    assert not (tmp_path / "d" / "wal").exists()  # refused before the node started
