"""Peers are who they say they are: a frame's sender is the member its connection's HELLO named
(bound to the certificate under peer TLS), a payload naming another sender is dropped and counted,
a certificate that does not name the member it claims is refused, and unknown frame kinds are
skipped without dropping the connection."""

import asyncio
import random
import struct
from pathlib import Path

import pytest

from verikv.cluster.certs import cluster_certs, issue
from verikv.shim.io import tls
from verikv.shim.io.transport import FRAME_HEAD, KIND_HELLO, Transport, encode_frame
from verikv.shim.node.machine import NodeConfig, NodeMachine
from verikv.shim.node.peer_wire import (MAX_FRAME_BYTES, CAMPAIGN, DIGEST, KIND_CAMPAIGN, KIND_CORE, KIND_DIGEST, KIND_FORWARD,
                                        KIND_READ_INDEX, READ_ASK)
from verikv.verified_core.core import Core

BASE_PORT = 28000  # 28000-28099


def addrs(offset, n=3):
    return [("127.0.0.1", BASE_PORT + offset + i) for i in range(n)]


async def wait_for(cond, timeout_s=5.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def hello(node_id):
    return encode_frame(KIND_HELLO, struct.pack("<I", node_id))


# ---- the node: a payload's sender must be the connection's member ----

def machine(tmp_path, node_id=0):
    config = NodeConfig(node_id=node_id, peer_addresses=addrs(90), data_dir=tmp_path)
    return NodeMachine(config, Core(node_id, 3), clock=lambda: 0.0, rng=random.Random(1))


def core_message_from(node_id):
    """A real message of node `node_id`'s core (its election's first messages)."""
    core = Core(node_id, 3, election_ticks=2, heartbeat_ticks=1)
    for _ in range(100):
        ready = core.tick()
        for _, msg in ready.early + ready.messages:
            return msg
    raise AssertionError("the core sent nothing")


def test_a_frame_naming_another_sender_is_dropped_and_counted(tmp_path):
    m = machine(tmp_path)
    msg = core_message_from(2)
    m.frame(KIND_CORE, msg, 1)  # node 1's connection carries a message node 2's core signed as its own
    m.frame(KIND_DIGEST, DIGEST.pack(63, 2, b"d" * 8), 1)
    m.frame(KIND_READ_INDEX, READ_ASK.pack(7, 2, 1, 2), 1)
    m.frame(KIND_CAMPAIGN, CAMPAIGN.pack(2), 1)  # node 1 asking for an election in node 2's name
    assert not m._inbox and not m._peer_digests
    assert m.checks.counts["FrameSenderIsConnectionMember"] == 4
    m.frame(KIND_CORE, msg, 2)  # the same frames from their own member are taken
    m.frame(KIND_DIGEST, DIGEST.pack(63, 2, b"d" * 8), 2)
    assert list(m._inbox) == [msg] and m._peer_digests == [(2, 63, b"d" * 8)]
    m.frame(KIND_FORWARD, b"", 1)  # a kind that names no sender is the connection's member's
    assert m.checks.counts["FrameSenderIsConnectionMember"] == 4


def test_the_check_counts_even_with_runtime_checks_off(tmp_path):
    config = NodeConfig(node_id=0, peer_addresses=addrs(90), data_dir=tmp_path, runtime_checks=False)
    m = NodeMachine(config, Core(0, 3), clock=lambda: 0.0, rng=random.Random(1))
    m.frame(KIND_DIGEST, DIGEST.pack(63, 2, b"d" * 8), 1)
    assert not m._peer_digests and m.checks.counts["FrameSenderIsConnectionMember"] == 1


# ---- the transport: the connection's member, HELLO first, unknown kinds skipped ----

async def test_frames_carry_the_member_of_their_connection_and_unknown_kinds_are_skipped():
    got = []
    t = Transport(1, addrs(0), lambda s, k, p: got.append((s, k, p)))
    await t.start()
    try:
        reader, writer = await asyncio.open_connection(*addrs(0)[1])
        writer.write(hello(2) + encode_frame(99, b"from a newer version") + encode_frame(KIND_CORE, b"a")
                     + hello(0) + encode_frame(KIND_CORE, b"b"))
        await wait_for(lambda: len(got) == 2)
        assert got == [(2, KIND_CORE, b"a"), (2, KIND_CORE, b"b")]  # the second HELLO changed nothing
        assert t.unknown_frames == 1
        assert t.refused["HELLO for another member"] == 1
        assert not writer.transport.is_closing()
        writer.close()
    finally:
        await t.close()


@pytest.mark.parametrize("first", [encode_frame(KIND_CORE, b"x"), hello(1), hello(7),
                                   encode_frame(KIND_HELLO, b"\0"),
                                   FRAME_HEAD.pack(MAX_FRAME_BYTES, KIND_CORE),
                                   FRAME_HEAD.pack(1 << 20, KIND_HELLO)])
async def test_a_connection_without_a_valid_hello_first_is_closed(first):
    """A frame before the HELLO, a HELLO naming this node itself, no member, or nothing readable;
    a long frame before the HELLO (a HELLO's included) is refused from its header, before the node
    reads (and buffers) what it says follows."""
    got = []
    t = Transport(1, addrs(10), lambda s, k, p: got.append((s, k, p)))
    await t.start()
    try:
        reader, writer = await asyncio.open_connection(*addrs(10)[1])
        writer.write(first + encode_frame(KIND_CORE, b"after"))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the receiver
        assert got == [] and sum(t.refused.values()) == 1
    finally:
        await t.close()


def spread_addrs(offset):
    """Three members on three loopback addresses (127.0.0.1-3, all on Linux's lo)."""
    return [(f"127.0.0.{i + 1}", BASE_PORT + offset + i) for i in range(3)]


async def test_without_tls_a_hello_must_come_from_the_members_address():
    got = []
    t = Transport(0, spread_addrs(70), lambda s, k, p: got.append((s, k, p)))
    await t.start()
    try:
        reader, writer = await asyncio.open_connection(*spread_addrs(70)[0])  # from 127.0.0.1
        writer.write(hello(1) + encode_frame(KIND_CORE, b"from the wrong address"))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert t.refused["address is not the member's"] == 1
        reader, writer = await asyncio.open_connection(*spread_addrs(70)[0], local_addr=("127.0.0.2", 0))
        writer.write(hello(1) + encode_frame(KIND_CORE, b"from member 1's address"))
        await wait_for(lambda: got)
        assert got == [(1, KIND_CORE, b"from member 1's address")] and sum(t.refused.values()) == 1
        writer.close()
    finally:
        await t.close()


async def test_members_on_their_own_addresses_connect_from_them():
    got = {i: [] for i in range(3)}
    ts = [Transport(i, spread_addrs(80), lambda s, k, p, i=i: got[i].append((s, k, p))) for i in range(3)]
    for t in ts:
        await t.start()
    try:
        for i in range(3):
            ts[i].send((i + 1) % 3, KIND_CORE, b"from %d" % i)
        await wait_for(lambda: all(got.values()))
        assert got == {1: [(0, KIND_CORE, b"from 0")], 2: [(1, KIND_CORE, b"from 1")],
                       0: [(2, KIND_CORE, b"from 2")]}
        assert all(not t.refused for t in ts)
    finally:
        for t in ts:
            await t.close()


async def test_a_refused_node_retries_after_its_backoff_not_in_a_tight_loop():
    """Node 1 believes node 0 lives at 127.0.0.3, so it refuses node 0's connections (from
    127.0.0.1) once each is made; node 0 tries again after its backoff, a few times a second."""
    a = addrs(85, 2)
    t0 = Transport(0, a, lambda s, k, p: None)
    t1 = Transport(1, [("127.0.0.3", a[0][1]), a[1]], lambda s, k, p: None)
    await t1.start()
    await t0.start()
    try:
        await asyncio.sleep(1.5)
        refused = t1.refused["address is not the member's"]
        assert 1 <= refused <= 10 and t0.peers[1].connects == refused
    finally:
        await t0.close()
        await t1.close()


# ---- peer TLS: certificates name members ----

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    files = cluster_certs(d, addrs(20))
    ca = (d / "ca.pem", d / "ca-key.pem")
    files["ip_only"] = issue(d, "ip-only", ca, "ip only", ["127.0.0.1"])
    files["other_host"] = issue(d, "other-host", ca, "other host", ["127.0.0.2"])
    other_ca = cluster_certs(d / "other", addrs(20))
    files["foreign"] = other_ca["nodes"][2]
    files["dir"] = d
    return files


def peer_args(cert, key, ca, cert_auth=True, data_dir=Path("/nonexistent"), crl="", allowed_cn="",
              allowed_hostname=""):
    class A:
        pass
    a = A()
    a.peer_cert_file, a.peer_key_file, a.peer_trusted_ca_file = str(cert), str(key), str(ca)
    a.peer_client_cert_auth, a.peer_auto_tls, a.data_dir = cert_auth, False, data_dir
    a.peer_crl_file, a.peer_cert_allowed_cn, a.peer_cert_allowed_hostname = str(crl or ""), allowed_cn, allowed_hostname
    return a


def peer_tls_of(certs, pair):
    return tls.peer_tls(peer_args(*pair, certs["ca"]), "127.0.0.1")


async def start_tls_transports(certs, offset, pairs):
    """Three transports on the ports the certificates name (offset 20), one after the other."""
    got = {i: [] for i in range(3)}
    ts = [Transport(i, addrs(offset), lambda s, k, p, i=i: got[i].append((s, k, p)),
                    tls=peer_tls_of(certs, pairs[i]), backoff_initial_s=0.01, backoff_max_s=0.05)
          for i in range(3)]
    for t in ts:
        await t.start()
    return ts, got


def test_names_member_by_uri_or_by_host():
    uri = {"subjectAltName": (("IP Address", "127.0.0.1"), ("URI", "https://127.0.0.1:2380"))}
    assert tls.names_member(uri, "127.0.0.1", 2380)
    assert not tls.names_member(uri, "127.0.0.1", 2381)  # URIs tell members on one host apart
    ip = {"subjectAltName": (("IP Address", "127.0.0.1"), ("DNS", "n1.example"))}
    assert tls.names_member(ip, "127.0.0.1", 2381) and not tls.names_member(ip, "127.0.0.2", 2380)
    assert tls.names_member(ip, "N1.example", 2380) and not tls.names_member(ip, "n2.example", 2380)
    assert not tls.names_member({}, "127.0.0.1", 2380)
    assert tls.names_member({"subjectAltName": (("URI", "https://[::1]:7/"),)}, "::1", 7)


async def test_members_with_their_own_certificates_talk(certs):
    ts, got = await start_tls_transports(certs, 20, certs["nodes"])
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        ts[0].send(1, KIND_CORE, b"to 1")
        ts[2].send(1, KIND_CORE, b"to 1 from 2")
        await wait_for(lambda: len(got[1]) == 2)
        assert sorted(got[1]) == [(0, KIND_CORE, b"to 1"), (2, KIND_CORE, b"to 1 from 2")]
        assert all(not t.refused for t in ts)
    finally:
        for t in ts:
            await t.close()


async def test_a_member_with_another_members_certificate_is_refused(certs):
    """Node 2 runs with node 1's certificate (signed by the cluster's CA): nodes 0 and 1 refuse
    its connections (its HELLO says 2, its certificate names member 1), and node 0 does not
    connect to it (the certificate it shows names member 1, not 2). Nothing it sends arrives."""
    ts, got = await start_tls_transports(certs, 20, [certs["nodes"][0], certs["nodes"][1], certs["nodes"][1]])
    try:
        await wait_for(lambda: ts[0].refused["certificate does not name the member"] >= 1
                       and ts[1].refused["certificate does not name the member"] >= 1)
        await wait_for(lambda: ts[0].refused["member's certificate"] >= 1)  # 0 connecting to 2
        ts[2].send(0, KIND_CORE, b"from the impostor")
        ts[0].send(2, KIND_CORE, b"to the impostor")
        ts[0].send(1, KIND_CORE, b"to 1")
        await wait_for(lambda: got[1] == [(0, KIND_CORE, b"to 1")])
        await asyncio.sleep(0.2)
        assert got[0] == [] and got[2] == []
        assert ts[0].peers[2].writer is None
    finally:
        for t in ts:
            await t.close()


@pytest.mark.parametrize("which", ["other_host", "foreign"])
async def test_a_certificate_for_another_host_or_from_another_ca_is_refused(certs, which):
    ts, got = await start_tls_transports(certs, 20,
                                         [certs["nodes"][0], certs["nodes"][1], certs[which]])
    try:
        if which == "other_host":  # signed by the CA, names no member: refused after the handshake
            await wait_for(lambda: ts[0].refused["certificate does not name the member"] >= 1)
        await wait_for(lambda: ts[0].refused["member's certificate"] >= 1)
        ts[2].send(0, KIND_CORE, b"from the impostor")
        await asyncio.sleep(0.3)
        assert got[0] == []
    finally:
        for t in ts:
            await t.close()


async def test_a_node_without_a_certificate_is_refused_at_the_handshake(certs):
    got = []
    t = Transport(1, addrs(60), lambda s, k, p: got.append((s, k, p)), tls=peer_tls_of(certs, certs["nodes"][1]))
    await t.start()
    try:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(certs["ca"]))
        reader, writer = await asyncio.open_connection(*addrs(60)[1], ssl=ctx, server_hostname="127.0.0.1")
        writer.write(hello(0) + encode_frame(KIND_CORE, b"x"))
        try:  # TLS 1.3: the client's side of the handshake ends first, then the server's alert
            data = await asyncio.wait_for(reader.read(), 5)
        except (ssl.SSLError, ConnectionError):
            data = b""
        assert data == b"" and got == []
        reader, writer = await asyncio.open_connection(*addrs(60)[1])  # plain TCP
        writer.write(hello(0) + encode_frame(KIND_CORE, b"x"))
        await asyncio.sleep(0.3)
        assert got == []
        writer.close()
    finally:
        await t.close()


def test_without_uri_names_members_are_named_by_host(certs):
    """etcd's rule: a certificate with only IP 127.0.0.1 names every member on 127.0.0.1."""
    cert = {"subjectAltName": (("IP Address", "127.0.0.1"),)}
    assert all(tls.names_member(cert, h, p) for h, p in addrs(0))
    assert certs["ip_only"][0].exists()
