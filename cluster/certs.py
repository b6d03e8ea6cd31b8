"""A local certificate authority and the certificates of a TLS cluster (`verikv cluster up --tls`),
made with Debian's python3-cryptography.

Each node's certificate serves both its client port and its peer port, and is also the client
certificate it shows other members. It names the node as the peer transport expects (see
shim/io/tls.py): the URI `https://HOST:PEER_PORT` (the node's entry in `--peers`) and the IP
address or DNS name HOST. A client certificate (`client.pem`) is made for etcdctl and other clients.
Keys are ECDSA P-256; files are PEM, keys readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

VALID_DAYS = 365


def _names(hosts: list[str], uris: list[str]):
    from cryptography import x509
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return names


def _write(directory: Path, stem: str, cert, key) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def make_ca(directory: Path, name: str = "verikv local CA") -> tuple[Path, Path]:
    """A self-signed CA in directory/ca.pem and ca-key.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "verikv"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return _write(directory, "ca", cert, key)


def issue(directory: Path, stem: str, ca: tuple[Path, Path], common_name: str,
          hosts: list[str] = (), uris: list[str] = ()) -> tuple[Path, Path]:
    """A certificate signed by `ca` (its cert and key files) for server and client use, naming
    `hosts` (IP addresses or DNS names) and `uris`, in directory/STEM.pem and STEM-key.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_cert = x509.load_pem_x509_certificate(Path(ca[0]).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca[1]).read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "verikv"),
                                        x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    names = _names(list(hosts), list(uris))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)


def cluster_certs(directory: Path, peers: list[tuple[str, int]]) -> dict:
    """The CA, one certificate per node (named as in this module's text) and a client
    certificate, in `directory`; made once and reused. Returns their paths."""
    ca = (directory / "ca.pem", directory / "ca-key.pem")
    if not all(p.exists() for p in ca):
        ca = make_ca(directory)
    nodes = []
    for i, (host, port) in enumerate(peers):
        stem = f"node{i}"
        paths = (directory / f"{stem}.pem", directory / f"{stem}-key.pem")
        if not all(p.exists() for p in paths):
            paths = issue(directory, stem, ca, f"verikv node{i}", [host, "localhost"] if host != "localhost"
                          else [host], [f"https://{host}:{port}"])
        nodes.append(paths)
    client = (directory / "client.pem", directory / "client-key.pem")
    if not all(p.exists() for p in client):
        client = issue(directory, "client", ca, "verikv client")
    return {"ca": ca[0], "nodes": nodes, "client": client}


def make_crl(path: Path, ca: tuple[Path, Path], revoked: list[Path] = (), valid_days: int = VALID_DAYS) -> Path:
    """A PEM certificate revocation list at `path`, signed by `ca` (its cert and key files),
    revoking the certificates in the files `revoked` (by serial number, now)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    ca_cert = x509.load_pem_x509_certificate(Path(ca[0]).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca[1]).read_bytes(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    next_update = now + datetime.timedelta(days=valid_days)  # in the past for valid_days < 0 (tests)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(min(now, next_update) - datetime.timedelta(minutes=5)).next_update(next_update))
    for cert_path in revoked:
        serial = x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - datetime.timedelta(minutes=1))
            .build())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path
