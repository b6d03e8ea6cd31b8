"""Peer transport with etcd's --peer-crl-file, --peer-cert-allowed-cn and
--peer-cert-allowed-hostname: a member whose certificate the CRL revokes, or whose certificate
lacks the allowed CN or host name, is refused (accepting) and not connected to (connecting); the
other members go on talking. Real certificates and CRLs (python3-cryptography), real TLS on
loopback. Ports 29100-29119."""

import asyncio
import ssl

import pytest

from test_peer_identity import peer_args
from verikv.cluster.certs import issue, make_ca, make_crl
from verikv.shim.io import tls
from verikv.shim.io.transport import Transport
from verikv.shim.node.peer_wire import KIND_CORE

BASE_PORT = 29100


def addrs(offset, n=3):
    return [("127.0.0.1", BASE_PORT + offset + i) for i in range(n)]


async def wait_for(cond, timeout_s=5.0):
    for _ in range(int(timeout_s / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    assert cond()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """For the members at addrs(0) and addrs(10): certificates naming them (URI and IP) with CN
    'member' (node 2's twice: one later revoked, one with CN 'intruder'; node 2's at addrs(10)
    also without the DNS name member.example the others carry), and a CRL revoking one."""
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d)
    f = {"ca": ca[0], "dir": d}
    for offset in (0, 10):
        for i, (host, port) in enumerate(addrs(offset)):
            dns = [] if (offset, i) == (10, 2) else ["member.example"]
            f[offset, i] = issue(d, f"n{offset}-{i}", ca, "member", [host, *dns], [f"https://{host}:{port}"])
        host, port = addrs(offset)[2]
        f[offset, "revoked"] = issue(d, f"n{offset}-revoked", ca, "member", [host, "member.example"],
                                     [f"https://{host}:{port}"])
        f[offset, "intruder"] = issue(d, f"n{offset}-intruder", ca, "intruder", [host, "member.example"],
                                      [f"https://{host}:{port}"])
    f["crl"] = make_crl(d / "crl.pem", ca, [f[0, "revoked"][0], f[10, "revoked"][0]])
    f["empty_crl"] = make_crl(d / "empty-crl.pem", ca, [])
    return f


async def start(certs, offset, pairs, **flags):
    got = {i: [] for i in range(3)}
    ts = [Transport(i, addrs(offset), lambda s, k, p, i=i: got[i].append((s, k, p)),
                    tls=tls.peer_tls(peer_args(*pairs[i], certs["ca"], **flags), "127.0.0.1"),
                    backoff_initial_s=0.01, backoff_max_s=0.05)
          for i in range(3)]
    for t in ts:
        await t.start()
    return ts, got


async def good_pair_talks_and_the_third_is_shut_out(ts, got):
    ts[0].send(1, KIND_CORE, b"to 1")
    ts[1].send(0, KIND_CORE, b"to 0")
    ts[2].send(0, KIND_CORE, b"from the third")
    ts[0].send(2, KIND_CORE, b"to the third")
    await wait_for(lambda: got[1] == [(0, KIND_CORE, b"to 1")] and got[0] == [(1, KIND_CORE, b"to 0")])
    await asyncio.sleep(0.3)
    assert got[2] == [] and (2, KIND_CORE, b"from the third") not in got[0]
    assert ts[0].peers[2].writer is None and ts[1].peers[2].writer is None


async def test_with_a_crl_revoking_none_of_them_all_members_talk(certs):
    ts, got = await start(certs, 0, [certs[0, i] for i in range(3)], crl=certs["crl"])
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        ts[2].send(0, KIND_CORE, b"from 2")
        await wait_for(lambda: got[0] == [(2, KIND_CORE, b"from 2")])
        assert all(not t.refused for t in ts)
    finally:
        for t in ts:
            await t.close()


async def test_a_member_with_a_revoked_certificate_is_refused_both_ways(certs):
    """Node 2 shows a certificate that names it, signed by the CA, but revoked by the CRL that
    nodes 0 and 1 load: its connections fail the handshake, and they do not connect to it."""
    ts, got = await start(certs, 0, [certs[0, 0], certs[0, 1], certs[0, "revoked"]], crl=certs["crl"])
    try:
        await wait_for(lambda: ts[0].refused["member's certificate"] >= 1 and ts[1].refused["member's certificate"] >= 1)
        assert "revoked" in ts[0].peers[2].last_error
        await good_pair_talks_and_the_third_is_shut_out(ts, got)
    finally:
        for t in ts:
            await t.close()


async def test_without_the_crl_the_same_certificate_is_accepted(certs):
    ts, got = await start(certs, 0, [certs[0, 0], certs[0, 1], certs[0, "revoked"]], crl=certs["empty_crl"])
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        assert all(not t.refused for t in ts)
    finally:
        for t in ts:
            await t.close()


async def test_a_member_without_the_allowed_cn_is_refused_both_ways(certs):
    ts, got = await start(certs, 0, [certs[0, 0], certs[0, 1], certs[0, "intruder"]], allowed_cn="member")
    try:
        await wait_for(lambda: ts[0].refused["its certificate's CN is 'intruder', not --peer-cert-allowed-cn "
                                             "'member'"] >= 1)
        await wait_for(lambda: ts[1].refused["member's certificate"] >= 1)  # 1 connecting to 2
        await good_pair_talks_and_the_third_is_shut_out(ts, got)
    finally:
        for t in ts:
            await t.close()


async def test_members_with_the_allowed_cn_talk(certs):
    ts, got = await start(certs, 0, [certs[0, i] for i in range(3)], allowed_cn="member")
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        assert all(not t.refused for t in ts)
    finally:
        for t in ts:
            await t.close()


async def test_a_member_not_valid_for_the_allowed_hostname_is_refused_both_ways(certs):
    ts, got = await start(certs, 10, [certs[10, i] for i in range(3)], allowed_hostname="member.example")
    try:
        await wait_for(lambda: ts[0].refused["its certificate is not valid for --peer-cert-allowed-hostname "
                                             "'member.example'"] >= 1)
        await good_pair_talks_and_the_third_is_shut_out(ts, got)
    finally:
        for t in ts:
            await t.close()


def test_valid_for_is_gos_verify_hostname():
    cert = {"subjectAltName": (("DNS", "*.example.com"), ("DNS", "Node.Example"), ("IP Address", "10.0.0.1"))}
    assert tls.valid_for(cert, "a.example.com") and tls.valid_for(cert, "node.example.")
    assert not tls.valid_for(cert, "a.b.example.com") and not tls.valid_for(cert, "example.com")
    assert tls.valid_for(cert, "10.0.0.1") and not tls.valid_for(cert, "10.0.0.2")
    assert not tls.valid_for({"subject": ((("commonName", "node.example"),),)}, "node.example")  # SANs only


def test_a_revoked_certificate_fails_at_the_handshake_with_the_crl_loaded(certs):
    """The contexts themselves: the accepting one refuses the revoked client certificate."""
    p = tls.peer_tls(peer_args(*certs[0, 0], certs["ca"], crl=certs["crl"]), "127.0.0.1")
    assert p.server.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF and p.client.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


async def test_a_crl_replaced_while_running_refuses_the_next_connections_of_a_revoked_member(tmp_path):
    """--peer-crl-file read again when the file changes: nodes 0 and 1 start with a CRL that
    revokes nothing and talk with node 2; their CRL files are then replaced by one revoking node
    2's certificate, without a restart. Node 2 comes back (a new connection each way): 0 and 1
    refuse it, accepting (the new context swapped in at its ClientHello) and connecting."""
    offset = 110  # ports 29210-29212
    ca = make_ca(tmp_path)
    pairs = [issue(tmp_path, f"m{i}", ca, "member", [host], [f"https://{host}:{port}"])
             for i, (host, port) in enumerate(addrs(offset))]
    crls = [make_crl(tmp_path / f"crl{i}.pem", ca, []) for i in range(3)]

    def transport(i):
        return Transport(i, addrs(offset), lambda s, k, p, i=i: got[i].append((s, k, p)),
                         tls=tls.peer_tls(peer_args(*pairs[i], ca[0], crl=crls[i]), "127.0.0.1"),
                         backoff_initial_s=0.01, backoff_max_s=0.05)
    got = {i: [] for i in range(3)}
    ts = [transport(i) for i in range(3)]
    for t in ts:
        await t.start()
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        ts[2].send(0, KIND_CORE, b"before")
        await wait_for(lambda: got[0] == [(2, KIND_CORE, b"before")])
        for i in (0, 1):
            make_crl(tmp_path / "new.pem", ca, [pairs[2][0]]).replace(crls[i])
        await ts[2].close()
        ts[2] = transport(2)
        await ts[2].start()
        await wait_for(lambda: ts[0].refused["member's certificate"] >= 1 and ts[1].refused["member's certificate"] >= 1)
        assert "revoked" in ts[0].peers[2].last_error
        ts[2].send(0, KIND_CORE, b"after")
        ts[0].send(1, KIND_CORE, b"0 to 1")
        await wait_for(lambda: got[1] == [(0, KIND_CORE, b"0 to 1")])  # 0 and 1 still talk
        await asyncio.sleep(0.5)  # node 2's connections to 0 and 1 fail their handshake: nothing arrives
        assert got[0] == [(2, KIND_CORE, b"before")] and ts[0].peers[2].writer is None
    finally:
        for t in ts:
            await t.close()
