"""TLS for the client port and the peer transport: etcd's flags turned into PEM bytes (for the
grpc++ front) and `ssl.SSLContext`s (for the peer transport), and how a certificate names a member.

How a peer certificate names a member (the member is the node at position i of `--peers`,
HOST:PORT):
- a certificate with URI subject alternative names names member i when one of them is
  `https://HOST:PORT` (the member's peer URL; this tells apart members that share a host, as the
  nodes of `verikv cluster up --tls` on 127.0.0.1 do);
- a certificate without URI names names member i when one of its IP address names equals HOST
  (HOST an IP address) or one of its DNS names equals HOST (HOST a name): etcd's rule (its
  `checkCertSAN`), under which members on one host cannot be told apart.
A node connecting to member i checks that the certificate it is shown names member i; a node that
requires peer client certificates (`--peer-client-cert-auth`) checks that the connecting node's
certificate names the member its HELLO claims, and closes the connection otherwise.

Revocation (`--client-crl-file`, `--peer-crl-file`, etcd's flags): a PEM CRL, which must be signed
by a CA of the side's trusted-CA file and not past its nextUpdate (else OpenSSL would refuse every
certificate), read at start and again whenever the file changes (`CRLFile`; etcd reads it at every
connection): the next handshake is checked against the CRL now in the file, without a restart;
while the file is not such a CRL, every certificate is refused (and the reason logged). A
certificate it revokes is refused at the TLS handshake: the client port's (the grpc++ front calls
`ClientTLS.refusal` from gRPC's certificate verifier), and on the peer port both ways (a node with
a revoked certificate is neither accepted nor connected to; etcd checks only the accepting side;
`PeerTLS` makes its contexts again when the file changes). Both need the side's client-cert-auth
flag: without it no certificate is asked for.

Client identity (`--client-cert-allowed-hostname`, etcd 3.4's flag): a client's certificate must
also be valid for that host name or IP address, by the same rule (`valid_for`) as
--peer-cert-allowed-hostname below; checked by the front at each handshake.

Peer identity (`--peer-cert-allowed-cn`, `--peer-cert-allowed-hostname`, etcd 3.4's flags, at most
one): besides naming its member, a member's certificate must have that common name, or be valid
for that host name or IP address (Go's `VerifyHostname`: a DNS name matched against the DNS
subject alternative names, `*.` matching one leftmost label; an IP address against the IP ones),
on the accepting side and, as etcd 3.4 does, on the connecting side too.

Errors in the flags or the files raise `TLSConfigError` with a one-line message.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path


log = logging.getLogger("verikv.tls")


class TLSConfigError(ValueError):
    pass


class CRLFile:
    """A CRL flag's file (`--client-crl-file`, `--peer-crl-file`), read again whenever it changes
    (its inode, size or mtime): `current()` is the CRL now in force, checked as at start (PEM,
    signed by a CA of the side's trusted-CA file, not past its nextUpdate), or raises
    TLSConfigError saying why the file is not usable (then every certificate is refused, as etcd
    refuses every connection when it cannot read its CRL)."""

    def __init__(self, path: str, flag: str, ca_file: str, ca_flag: str):
        self.path, self.flag, self.ca_file, self.ca_flag = path, flag, ca_file, ca_flag
        self._seen: tuple | None = None
        self._crl = None
        self.version = 0  # moves on with each new CRL read
        self.current()  # at start, a bad file stops the node

    def _stamp(self) -> tuple:
        try:
            st = Path(self.path).stat()
        except OSError as err:
            raise TLSConfigError(f"{self.flag} {self.path}: cannot read it: {err.strerror or err}") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self):
        stamp = self._stamp()
        if stamp != self._seen:
            from cryptography import x509
            crl = x509.load_pem_x509_crl(_load_crl(self.path, self.flag, self.ca_file, self.ca_flag))
            self._seen, self._crl, self.version = stamp, crl, self.version + 1
        elif self._crl is not None:
            _check_fresh(self._crl, self.flag, self.path)
        return self._crl

    def revoked(self, pem_certs: list) -> str:
        """Why one of these certificates (cryptography's) is revoked by the CRL now in force, or ""."""
        crl = self.current()
        for cert in pem_certs:
            if cert.issuer == crl.issuer and crl.get_revoked_certificate_by_serial_number(cert.serial_number):
                return f"its certificate (serial {cert.serial_number:x}) is revoked by {self.flag} {self.path}"
        return ""


@dataclass(frozen=True)
class ClientTLS:
    """The client port's TLS, as the grpc++ front takes it (PEM bytes, and `check` for the
    certificate a client shows, called at every handshake)."""
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    client_cert_auth: bool
    crl: CRLFile | None = None  # --client-crl-file
    allowed_hostname: str = ""  # --client-cert-allowed-hostname

    @property
    def check(self):
        """What the front calls at each client handshake (`refusal`), or None if nothing to check."""
        return self.refusal if self.crl is not None or self.allowed_hostname else None

    def refusal(self, leaf_pem: bytes, chain_pem: bytes) -> str:
        """Why a client's certificate (its chain verified by gRPC against the trusted CA) is
        refused: revoked by --client-crl-file (any certificate of the chain the client sent), or
        not valid for --client-cert-allowed-hostname (`valid_for`, the peer side's rule); "" if not."""
        try:
            from cryptography import x509
            leaf = x509.load_pem_x509_certificate(leaf_pem)
            if self.allowed_hostname and not valid_for(_names(leaf), self.allowed_hostname):
                why = f"its certificate is not valid for --client-cert-allowed-hostname {self.allowed_hostname!r}"
            elif self.crl is not None:
                why = self.crl.revoked([leaf] + _certs_in(chain_pem))
            else:
                why = ""
        except TLSConfigError as err:  # the CRL file is not usable now: nobody is let in
            why = f"{err} (every client certificate is refused until the file holds a usable CRL)"
        except ValueError as err:
            why = f"its certificate cannot be read ({err})"
        if why:
            log.warning("a client is refused at the TLS handshake: %s", why)
        return why


class PeerTLS:
    """The peer transport's TLS: a context to accept with (`server`), one to connect with
    (`client_context()`), and whether certificates are checked (not with --peer-auto-tls, as etcd
    does not check them either). With --peer-crl-file, both contexts are made again when the CRL
    file changes: a new connection is checked against the CRL now in the file (the accepting
    side swaps the new context in from `server`'s SNI callback, which OpenSSL calls at each
    ClientHello); while the file is not a usable CRL, connections are refused both ways."""

    def __init__(self, build, verify_server: bool, client_cert_auth: bool, allowed_cn: str = "",
                 allowed_hostname: str = "", crl: CRLFile | None = None):
        self._build = build  # () -> (server context, client context), with the CRL now in the file
        self.verify_server = verify_server  # connecting: the member's certificate is checked against the CA
        self.client_cert_auth = client_cert_auth  # accepting: a connecting node must show a certificate naming its member
        self.allowed_cn = allowed_cn  # --peer-cert-allowed-cn: the common name a member's certificate must have
        self.allowed_hostname = allowed_hostname  # --peer-cert-allowed-hostname: a name or address it must be valid for
        self.crl = crl
        self._version = crl.version if crl is not None else 0
        self.server, self.client = build()
        self._server_now = self.server
        if crl is not None:
            self.server.sni_callback = self._on_client_hello

    def _refresh(self) -> None:
        if self.crl is None:
            return
        self.crl.current()  # raises TLSConfigError while the file is not a usable CRL
        if self.crl.version != self._version:
            version = self.crl.version
            try:
                server, client = self._build()
            except (ssl.SSLError, OSError) as err:
                raise TLSConfigError(f"cannot make the peer TLS contexts again: {err}") from None
            server.sni_callback = self._on_client_hello
            self._server_now, self.client, self._version = server, client, version
            log.info("%s %s read again: new peer connections are checked against it", self.crl.flag, self.crl.path)

    def client_context(self) -> ssl.SSLContext:
        """The context to connect to a member with now; TLSConfigError while the CRL file is not usable."""
        self._refresh()
        return self.client

    def _on_client_hello(self, ssl_obj, server_name, context):
        try:
            self._refresh()
        except TLSConfigError as err:
            log.warning("a member's connection is refused: %s", err)
            return ssl.ALERT_DESCRIPTION_ACCESS_DENIED
        if ssl_obj.context is not self._server_now:
            ssl_obj.context = self._server_now
        return None


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise TLSConfigError(f"{flag} {path}: cannot read it: {err.strerror or err}") from None


def _check_pair(cert_file: str, key_file: str, cert_flag: str, key_flag: str) -> None:
    _read(cert_file, cert_flag)
    _read(key_file, key_flag)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as err:
        raise TLSConfigError(f"{cert_flag} {cert_file} and {key_flag} {key_file} are not a PEM certificate "
                             f"and its private key ({err.reason or err})") from None


def _check_ca(ca_file: str, flag: str) -> None:
    _read(ca_file, flag)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as err:
        raise TLSConfigError(f"{flag} {ca_file} holds no PEM certificate ({err.reason or err})") from None


def _check_flags(cert: str, key: str, ca: str, cert_auth: bool, auto: bool, prefix: str) -> bool:
    """Whether TLS is on for this side; raises TLSConfigError for a combination that is not."""
    if bool(cert) != bool(key):
        given, missing = (f"--{prefix}cert-file", f"--{prefix}key-file") if cert else \
            (f"--{prefix}key-file", f"--{prefix}cert-file")
        raise TLSConfigError(f"{given} needs {missing}")
    if cert_auth and not ca:
        raise TLSConfigError(f"--{prefix}client-cert-auth needs --{prefix}trusted-ca-file")
    if ca and not (cert or auto):
        raise TLSConfigError(f"--{prefix}trusted-ca-file needs --{prefix}cert-file and --{prefix}key-file "
                             f"(or --{prefix}auto-tls)")
    if cert:
        _check_pair(cert, key, f"--{prefix}cert-file", f"--{prefix}key-file")
    if ca:
        _check_ca(ca, f"--{prefix}trusted-ca-file")
    return bool(cert) or auto


def _load_crl(path: str, flag: str, ca_file: str, ca_flag: str) -> bytes:
    """The PEM bytes of a CRL file, checked as this module's text says."""
    from cryptography import x509
    data = _read(path, flag)
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise TLSConfigError(f"{flag} {path} is not a PEM certificate revocation list (X509 CRL)") from None
    if not any(ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key()) for ca in _pem_certs(ca_file)):
        raise TLSConfigError(f"{flag} {path} is not signed by a CA of {ca_flag} {ca_file} "
                             f"(its issuer: {crl.issuer.rfc4514_string()})")
    _check_fresh(crl, flag, path)
    return data


def _check_fresh(crl, flag: str, path: str) -> None:
    next_update = crl.next_update
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if next_update is not None and next_update < now:
        raise TLSConfigError(f"{flag} {path} expired at {next_update:%Y-%m-%d %H:%M:%S} UTC (its nextUpdate): "
                             f"every certificate would be refused; issue a fresh one")


def _pem_certs(path: str) -> list:
    return _certs_in(Path(path).read_bytes())


def _certs_in(pem: bytes) -> list:
    from cryptography import x509
    marker = b"-----END CERTIFICATE-----"
    certs = []
    for block in pem.split(marker)[:-1]:
        try:
            certs.append(x509.load_pem_x509_certificate(block + marker))
        except ValueError:
            pass
    return certs


def self_signed(directory: Path, hosts: list[str], name: str) -> tuple[str, str]:
    """A self-signed certificate and key for `hosts` in `directory` (cert.pem, key.pem), made
    once and reused, as etcd's --auto-tls does under DATA_DIR/fixtures. Returns their paths."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return str(cert_path), str(key_path)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "verikv"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


def _san(hosts: list[str]):
    from cryptography import x509
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def client_tls(args) -> ClientTLS | None:
    """The client port's TLS from `verikv serve`'s flags, or None (plain text)."""
    on = _check_flags(args.cert_file, args.key_file, args.trusted_ca_file, args.client_cert_auth, args.auto_tls, "")
    for flag, value in (("--client-crl-file", args.client_crl_file),
                        ("--client-cert-allowed-hostname", args.client_cert_allowed_hostname)):
        if value and not args.client_cert_auth:
            raise TLSConfigError(f"{flag} needs --client-cert-auth (and --trusted-ca-file): without it no "
                                 f"client shows a certificate to check")
    if not on:
        return None
    cert, key = args.cert_file, args.key_file
    if not cert:  # --auto-tls: etcd ignores it when a certificate is given
        host = args.client_listen[0]
        cert, key = self_signed(Path(args.data_dir) / "fixtures" / "client", [host, "localhost", "127.0.0.1"],
                                "verikv client")
    crl = CRLFile(args.client_crl_file, "--client-crl-file", args.trusted_ca_file, "--trusted-ca-file") \
        if args.client_crl_file else None
    return ClientTLS(_read(cert, "--cert-file"), _read(key, "--key-file"),
                     _read(args.trusted_ca_file, "--trusted-ca-file") if args.trusted_ca_file else b"",
                     args.client_cert_auth, crl, args.client_cert_allowed_hostname.strip())


def peer_tls(args, peer_host: str) -> PeerTLS | None:
    """The peer transport's TLS from `verikv serve`'s --peer-* flags, or None (plain TCP)."""
    on = _check_flags(args.peer_cert_file, args.peer_key_file, args.peer_trusted_ca_file,
                      args.peer_client_cert_auth, args.peer_auto_tls, "peer-")
    if args.peer_cert_allowed_cn and args.peer_cert_allowed_hostname:
        raise TLSConfigError(f"--peer-cert-allowed-cn and --peer-cert-allowed-hostname are mutually exclusive "
                             f"(cn={args.peer_cert_allowed_cn!r}, hostname={args.peer_cert_allowed_hostname!r})")
    for flag, value in (("--peer-crl-file", args.peer_crl_file), ("--peer-cert-allowed-cn", args.peer_cert_allowed_cn),
                        ("--peer-cert-allowed-hostname", args.peer_cert_allowed_hostname)):
        if value and not args.peer_client_cert_auth:
            raise TLSConfigError(f"{flag} needs --peer-client-cert-auth (and --peer-cert-file, --peer-key-file, "
                                 f"--peer-trusted-ca-file): without it no member shows a certificate to check")
    if not on:
        return None
    if args.peer_client_cert_auth and not args.peer_cert_file:
        raise TLSConfigError("--peer-client-cert-auth needs --peer-cert-file and --peer-key-file: with "
                             "--peer-auto-tls alone, no member shows a certificate the CA signed")
    cert, key, ca = args.peer_cert_file, args.peer_key_file, args.peer_trusted_ca_file
    auto = not cert
    if auto:
        cert, key = self_signed(Path(args.data_dir) / "fixtures" / "peer", [peer_host, "localhost", "127.0.0.1"],
                                "verikv peer")
    verify_server = not auto  # a self-signed certificate names no one: etcd does not check it either
    crl = CRLFile(args.peer_crl_file, "--peer-crl-file", ca, "--peer-trusted-ca-file") if args.peer_crl_file else None

    def build() -> tuple[ssl.SSLContext, ssl.SSLContext]:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_2
        server.load_cert_chain(cert, key)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.minimum_version = ssl.TLSVersion.TLSv1_2
        client.load_cert_chain(cert, key)  # shown to the member connected to, as etcd does
        if verify_server:
            if ca:
                client.load_verify_locations(cafile=ca)
            else:
                client.load_default_certs()
        else:
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
        if args.peer_client_cert_auth:
            server.verify_mode = ssl.CERT_REQUIRED
            server.load_verify_locations(cafile=ca)
        if crl is not None:
            for ctx in (server, client):
                try:  # a file, not cadata: only a file's CRLs are loaded
                    ctx.load_verify_locations(cafile=crl.path)
                except (ssl.SSLError, OSError) as err:
                    raise TLSConfigError(f"--peer-crl-file {crl.path}: {getattr(err, 'reason', None) or err}") from None
                ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return server, client

    return PeerTLS(build, verify_server, args.peer_client_cert_auth, args.peer_cert_allowed_cn,
                   args.peer_cert_allowed_hostname, crl)


def identity_refusal(cert: dict, tls: PeerTLS) -> str:
    """Why a member's verified certificate (as `getpeercert()` decodes it) fails
    --peer-cert-allowed-cn or --peer-cert-allowed-hostname, or "" if it passes (or neither is set)."""
    if tls.allowed_cn:
        cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        if tls.allowed_cn not in cns[-1:]:  # Go's Subject.CommonName: the last CN
            return f"its certificate's CN is {cns[-1] if cns else ''!r}, not --peer-cert-allowed-cn {tls.allowed_cn!r}"
    if tls.allowed_hostname and not valid_for(cert, tls.allowed_hostname):
        return f"its certificate is not valid for --peer-cert-allowed-hostname {tls.allowed_hostname!r}"
    return ""


def valid_for(cert: dict, host: str) -> bool:
    """Go's `x509.Certificate.VerifyHostname(host) == nil` on a `getpeercert()` dict (SANs only)."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    sans = cert.get("subjectAltName", ())
    if _is_ip(host):
        return any(k == "IP Address" and _same_host(v.strip(), host) for k, v in sans)
    want = host.lower().rstrip(".")
    for kind, pattern in sans:
        if kind != "DNS":
            continue
        pattern = pattern.lower().rstrip(".")
        if pattern == want:
            return True
        if pattern.startswith("*.") and "." in want and want.split(".", 1)[1] == pattern[2:] and want.split(".")[0]:
            return True
    return False


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower().rstrip(".") == b.lower().rstrip(".")


def names_member(cert: dict, host: str, port: int) -> bool:
    """Whether a certificate (as `SSLSocket.getpeercert()` decodes a verified one) names the
    member whose peer address is host:port (the rule in this module's text)."""
    sans = cert.get("subjectAltName", ())
    uris = [v for k, v in sans if k == "URI"]
    if uris:
        return any(_uri_is(u, host, port) for u in uris)
    for kind, value in sans:
        if kind == "IP Address" and _is_ip(host) and _same_host(value.strip(), host):
            return True
        if kind == "DNS" and not _is_ip(host) and _same_host(value, host):
            return True
    return False


def file_names(cert_file: str) -> dict:
    """The subject alternative names of a PEM certificate file, as `getpeercert()` shows them."""
    from cryptography import x509
    return _names(x509.load_pem_x509_certificate(Path(cert_file).read_bytes()))


def _names(cert) -> dict:
    """The subject alternative names of a certificate (cryptography's), as `getpeercert()` shows them."""
    from cryptography import x509
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    names = [("DNS", n) for n in san.get_values_for_type(x509.DNSName)]
    names += [("IP Address", str(n)) for n in san.get_values_for_type(x509.IPAddress)]
    names += [("URI", n) for n in san.get_values_for_type(x509.UniformResourceIdentifier)]
    return {"subjectAltName": tuple(names)}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _uri_is(uri: str, host: str, port: int) -> bool:
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "https":
        return False
    rest = rest.rstrip("/")
    h, sep, p = rest.rpartition(":")
    if not sep or not p.isdigit():
        return False
    h = h[1:-1] if h.startswith("[") and h.endswith("]") else h
    return int(p) == port and _same_host(h, host)
