"""The grpc++ client front (shim/api/_front) on its own: `finish` queues answers that the front's
completion-queue thread sends in batches, so every call gets exactly its own answer or status,
a call is answered once, and answers queued just before a shutdown still reach their clients.
Streams: every client message arrives in order, then the end of the client's side; messages
sent on a stream arrive in order, and its status after them."""

import asyncio

import grpc
import pytest

from verikv.shim.api import _front

PORT = 25480
METHOD = "/test.Echo/Echo"
STREAM = "/test.Echo/Chat"


async def take_calls(front, n: int, tokens: bool = False) -> list[tuple]:
    """The next n messages the front took in, waiting on its eventfd like the server does:
    (id, method, bytes, kind), and the token metadata last if `tokens`."""
    loop = asyncio.get_running_loop()
    calls: list = []
    got = asyncio.Event()

    def on_calls():
        calls.extend(front.take())
        if len(calls) >= n:
            got.set()

    loop.add_reader(front.fd, on_calls)
    try:
        on_calls()  # some may have arrived already
        await asyncio.wait_for(got.wait(), 10)
    finally:
        loop.remove_reader(front.fd)
    return calls if tokens else [c[:4] for c in calls]


async def silent():
    """A client's side of a stream that sends nothing and stays open (until the test cancels it)."""
    await asyncio.Event().wait()
    yield b""


@pytest.fixture
async def front_and_channel():
    front = _front.Front(f"127.0.0.1:{PORT}", 1 << 20, [STREAM])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{PORT}")
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    call.stream = channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
    yield front, call
    await channel.close()
    front.shutdown(0.0)


async def test_many_calls_answered_in_one_batch_each_get_their_own_answer(front_and_channel):
    front, call = front_and_channel
    n = 300
    pending = [asyncio.ensure_future(call(b"q%d" % i, timeout=20)) for i in range(n)]
    calls = await take_calls(front, n)
    assert sorted(body for _, _, body, _ in calls) == sorted(b"q%d" % i for i in range(n))
    assert {(method, kind) for _, method, _, kind in calls} == {(METHOD, 0)}
    for call_id, _, body, _ in calls:  # all queued before the front's thread runs again
        if body.endswith(b"7"):
            assert front.finish(call_id, grpc.StatusCode.NOT_FOUND.value[0], "no " + body.decode(), b"")
        else:
            assert front.finish(call_id, 0, "", b"a" + body[1:] * 50)
        assert not front.finish(call_id, 0, "", b"twice")  # answered once only
    for i, fut in enumerate(pending):
        if i % 10 == 7:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await fut
            assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details() == f"no q{i}"
        else:
            assert await fut == b"a" + (b"%d" % i) * 50
    assert not front.finish(10**9, 0, "", b"unknown call")


async def test_answers_queued_before_a_shutdown_are_sent(front_and_channel):
    front, call = front_and_channel
    answered = asyncio.ensure_future(call(b"answered", timeout=20))
    waiting = asyncio.ensure_future(call(b"waiting", timeout=20))
    calls = {body: call_id for call_id, _, body, _ in await take_calls(front, 2)}
    assert front.finish(calls[b"answered"], 0, "", b"the answer")
    await asyncio.get_running_loop().run_in_executor(None, front.shutdown, 0.5)
    assert await answered == b"the answer"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await waiting
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not front.finish(calls[b"waiting"], 0, "", b"too late")


async def test_a_stream_carries_messages_both_ways_in_order_then_its_status(front_and_channel):
    front, call = front_and_channel
    requests: asyncio.Queue = asyncio.Queue()

    async def client_messages():
        while (m := await requests.get()) is not None:
            yield m

    stream = call.stream(client_messages())
    for i in range(5):
        requests.put_nowait(b"m%d" % i)
    got = await take_calls(front, 6)
    assert [(method, body, kind) for _, method, body, kind in got] == [(STREAM, b"", 3)] + [
        (STREAM, b"m%d" % i, 1) for i in range(5)]  # opened (no hasleader metadata), then each message
    (stream_id,) = {call_id for call_id, *_ in got}
    for i in range(200):
        assert front.send(stream_id, b"r%d" % i + b"x" * (i * 37))
    for i in range(200):
        assert await stream.read() == b"r%d" % i + b"x" * (i * 37)
    requests.put_nowait(None)  # the client ends its side: told once; it still gets what is sent
    (half,) = await take_calls(front, 1)
    assert half == (stream_id, STREAM, b"", 4)
    assert front.send(stream_id, b"after the half-close")
    assert await stream.read() == b"after the half-close"
    assert front.finish(stream_id, grpc.StatusCode.OUT_OF_RANGE.value[0], "the end", b"")
    assert not front.send(stream_id, b"after the end") and not front.finish(stream_id, 0, "", b"")
    assert await stream.code() == grpc.StatusCode.OUT_OF_RANGE and await stream.details() == "the end"
    assert front.take() == []  # a finish is not reported


async def test_a_burst_sent_on_new_streams_arrives_whole(front_and_channel):
    """Messages queued together on a stream leave in one flush (grpc's buffer hint); a stream's
    first write, which carries its initial metadata, must not wait for a flush: a burst of
    keep-alive answers as a stream's first messages (a follower answers in bursts) once stalled
    the stream for good."""
    front, call = front_and_channel
    streams = [call.stream(silent()) for _ in range(50)]
    opened = await take_calls(front, len(streams))
    assert {kind for *_, kind in opened} == {3}
    # each stream's first messages, queued at once (one lock, one wake-up of the front's thread)
    assert front.send_many([(stream_id, b"burst %d" % i) for stream_id, *_ in opened for i in range(16)]) == []
    for stream in streams:
        got = [await asyncio.wait_for(stream.read(), 5) for _ in range(16)]
        assert got == [b"burst %d" % i for i in range(16)]
    for stream_id, *_ in opened:
        assert front.finish(stream_id, 0, "", b"")
    assert front.send_many([(opened[0][0], b"after the end"), (10**9, b"unknown"), (opened[0][0], b"again")]) == [
        opened[0][0], 10**9]  # each stream that cannot take it, once


async def test_send_many_reports_the_streams_whose_backlog_it_took_above_a_bound(front_and_channel):
    """With `high`, send_many also names each stream whose backlog (its queued bytes) is above
    `high` after the batch: the watch streams to pause, without asking the front per stream."""
    front, call = front_and_channel
    streams = [call.stream(silent()) for _ in range(2)]
    (a, *_), (b, *_) = await take_calls(front, 2)
    batch = [(a, b"x" * 60), (b, b"y" * 10), (a, b"x" * 60), (10**9, b"unknown")]
    assert front.send_many(batch, 100) == ([10**9], [a])  # a: 120 bytes queued (or in flight) then
    assert front.send_many([(b, b"z")]) == []  # without `high`: the failed ids alone, as before
    with pytest.raises(TypeError):
        front.send_many([("not an id", b"x")])
    with pytest.raises(TypeError):
        front.send_many([(a, "not bytes")])
    for s in streams:
        s.cancel()


async def test_streams_a_client_cancels_or_a_shutdown_ends_are_told_and_closed(front_and_channel):
    front, call = front_and_channel
    cancelled = call.stream(iter([b"hello"]), metadata=(("hasleader", "true"),))
    (opened, hello, half) = await take_calls(front, 3)
    assert opened[2:] == (b"true", 3) and hello[2:] == (b"hello", 1) and half[2:] == (b"", 4)
    cancelled.cancel()
    (end,) = await take_calls(front, 1)
    assert (end[0], end[2:]) == (hello[0], (b"", 2))  # the client went away: told once
    assert front.finish(hello[0], 0, "", b"")  # the server finishes it: the stream closes
    assert not front.send(hello[0], b"x")
    for _ in range(100):
        if front.open_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert front.open_streams == 0
    open_stream = call.stream(iter([b"open"]))
    opened = (await take_calls(front, 2))[0]  # then its message, and maybe already its half-close
    assert front.send(opened[0], b"before the shutdown")
    await asyncio.get_running_loop().run_in_executor(None, front.shutdown, 0.5)
    assert await open_stream.read() == b"before the shutdown"
    assert await open_stream.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_token_metadata_of_a_call_or_a_new_stream_reaches_python(front_and_channel):
    """etcd's clients send their auth token as the "token" metadata of every call; the front
    hands it over with the request (None without one), and with a stream's OPEN. (The common
    name of a client's certificate, handed over without a token when clients must show one, is
    checked by tests/integration/test_auth_clients.py over TLS.)"""
    front, call = front_and_channel
    with_token = asyncio.ensure_future(call(b"mine", metadata=(("token", "abc.7"),), timeout=10))
    without = asyncio.ensure_future(call(b"none", timeout=10))
    got = {c[2]: c for c in await take_calls(front, 2, tokens=True)}
    assert got[b"mine"][4] == b"abc.7" and got[b"none"][4] is None
    assert got[b"mine"][5] is None and got[b"none"][5] is None  # no client certificates here
    for c in got.values():
        assert front.finish(c[0], 0, "", b"ok")
    assert await with_token == b"ok" and await without == b"ok"
    stream = call.stream(iter([b"hi"]), metadata=(("token", "xyz.1"),))
    opened = (await take_calls(front, 2, tokens=True))[0]
    assert opened[3] == 3 and opened[4] == b"xyz.1"
    assert front.finish(opened[0], 0, "", b"")
    assert await stream.code() == grpc.StatusCode.OK


async def test_a_connection_has_at_most_max_concurrent_streams_calls_open_at_once():
    front = _front.Front(f"127.0.0.1:{PORT + 1}", 1 << 20, [STREAM], max_concurrent_streams=2)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{PORT + 1}")
    try:
        chat = channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
        first, second = chat(iter([b"1"])), chat(iter([b"2"]))
        got = await take_calls(front, 6)  # each: opened, its message, its half-close
        opened = sorted({call_id for call_id, *_ in got})
        assert len(opened) == 2
        third = chat(iter([b"3"]))  # waits in the client: the connection's two streams are open
        await asyncio.sleep(0.5)
        assert front.take() == []
        assert front.finish(opened[0], 0, "", b"")  # one ends: the third opens
        late = await take_calls(front, 3)
        assert {body for _, _, body, kind in late if kind == 1} == {b"3"}
        for call_id in {c[0] for c in late} | {opened[1]}:
            assert front.finish(call_id, 0, "", b"")
        for stream in (first, second, third):
            assert await stream.code() == grpc.StatusCode.OK
    finally:
        await channel.close()
        front.shutdown(0.0)


def _tls_front(tmp_path, port, check):
    from verikv.cluster.certs import issue, make_ca
    ca = make_ca(tmp_path)
    server = issue(tmp_path, "server", ca, "server", ["127.0.0.1"])
    front = _front.Front(f"127.0.0.1:{port}", 1 << 20, [STREAM], cert_pem=server[0].read_bytes(),
                         key_pem=server[1].read_bytes(), ca_pem=ca[0].read_bytes(), client_cert_auth=True,
                         check=check)

    def channel(pair):
        return grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(
            ca[0].read_bytes(), pair[1].read_bytes(), pair[0].read_bytes()))
    return front, ca, channel


async def refused(channel, pair):
    async with channel(pair) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ch.unary_unary(METHOD)(b"refused", timeout=3)
        return err.value.code() == grpc.StatusCode.UNAVAILABLE


async def served(front, channel, pair, cn):
    async with channel(pair) as ch:
        fut = asyncio.ensure_future(ch.unary_unary(METHOD)(b"served", timeout=10))
        [(call_id, method, body, kind, token, got_cn)] = await take_calls(front, 1, tokens=True)
        assert (method, body, token, got_cn) == (METHOD, b"served", None, cn)
        assert front.finish(call_id, 0, "", b"ok")
        return await fut == b"ok"


async def test_a_client_whose_certificate_fails_the_check_is_refused_at_the_handshake(tmp_path):
    """The front's certificate check (gRPC's ExternalCertificateVerifier calling tls.py's
    ClientTLS.refusal at every handshake): --client-cert-allowed-hostname refuses a client whose
    certificate is not valid for the host, and --client-crl-file one its CRL revokes, read again
    when the file is replaced, without a restart. A refused client's calls never reach Python."""
    from verikv.cluster.certs import issue, make_crl
    from verikv.shim.io.tls import ClientTLS, CRLFile
    port = 29200
    checks = []
    front, ca, channel = _tls_front(tmp_path, port, lambda leaf, chain: checks[0].refusal(leaf, chain))
    try:
        crl = make_crl(tmp_path / "crl.pem", ca, [])
        checks.append(ClientTLS(b"", b"", b"", True, CRLFile(str(crl), "--client-crl-file", str(ca[0]),
                                                             "--trusted-ca-file"), "app.example"))
        named = issue(tmp_path, "named", ca, "named user", ["app.example"])
        other = issue(tmp_path, "other", ca, "other user", ["other.example"])
        assert await refused(channel, other)
        assert await served(front, channel, named, "named user")
        make_crl(tmp_path / "crl2.pem", ca, [named[0]]).replace(crl)  # revoked while the front runs
        assert await refused(channel, named)
        make_crl(tmp_path / "crl3.pem", ca, []).replace(crl)  # and no longer
        assert await served(front, channel, named, "named user")
        assert front.take() == []  # the refused clients' calls never arrived
    finally:
        front.shutdown(0.0)


async def test_a_check_that_fails_refuses_the_client_and_the_front_serves_on(tmp_path):
    calls = []

    def check(leaf, chain):
        calls.append(leaf)
        if len(calls) == 1:
            raise RuntimeError("a bug in the check")
        return ""
    from verikv.cluster.certs import issue
    front, ca, channel = _tls_front(tmp_path, 29201, check)
    try:
        pair = issue(tmp_path, "c", ca, "c user")
        assert await refused(channel, pair)
        assert await served(front, channel, pair, "c user")
        assert calls[0].startswith(b"-----BEGIN CERTIFICATE")
    finally:
        front.shutdown(0.0)
    with pytest.raises(ValueError, match="a certificate check needs cert_pem and client_cert_auth"):
        _front.Front("127.0.0.1:29202", 1 << 20, [STREAM], check=check)


def _own_connection(target, credentials=None):
    """A channel with a connection of its own (gRPC shares one between the channels of a process)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


async def echo(front, stop):
    """Answer every unary call with its request, until `stop` is set."""
    loop = asyncio.get_running_loop()

    def on_calls():
        for call_id, _, body, kind in (c[:4] for c in front.take()):
            if kind == 0:
                front.finish(call_id, 0, "", b"echo " + body)
    loop.add_reader(front.fd, on_calls)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(front.fd)


async def test_a_client_address_has_at_most_max_connections_per_client_connections_open():
    """With max_connections_per_client=2, a client's third connection is refused: its calls, a
    stream's too, are answered RESOURCE_EXHAUSTED with why, and never reach Python; a second
    later it is closed, so its channel connects again, and is served once one of the first two
    has ended. The front listens itself (gRPC 1.51 has no such limit): see connection_limit.h."""
    target = f"127.0.0.1:{PORT + 2}"
    front = _front.Front(target, 1 << 20, [STREAM], max_connections_per_client=2)
    stop = asyncio.Event()
    server = asyncio.ensure_future(echo(front, stop))
    channels = [_own_connection(target) for _ in range(3)]
    try:
        assert front.port == PORT + 2
        for i in (0, 1):
            assert await channels[i].unary_unary(METHOD)(b"%d" % i, timeout=10) == b"echo %d" % i
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channels[2].unary_unary(METHOD)(b"2", timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details() == ("verikv: too many connections from 127.0.0.1: at most 2 per client "
                                       "(--max-connections-per-client)")
        stream = channels[2].stream_stream(STREAM)(iter([b"s"]))
        assert await stream.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert front.refused_connections == 1
        await channels[0].close()  # one of the two ends
        await asyncio.sleep(1.5)  # the refused connection is closed meanwhile
        assert await channels[2].unary_unary(METHOD)(b"2", timeout=10) == b"echo 2"
        assert await channels[1].unary_unary(METHOD)(b"1", timeout=10) == b"echo 1"
        fourth = _own_connection(target)  # 1 and 2 are open: a fourth is one too many
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await fourth.unary_unary(METHOD)(b"4", timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await fourth.close()
        assert front.refused_connections == 2
    finally:
        stop.set()
        await server
        for ch in channels[1:]:
            await ch.close()
        front.shutdown(0.0)


async def test_the_connection_limit_holds_over_tls(tmp_path):
    """The connections the front accepts itself get gRPC's TLS handshake as any other."""
    from verikv.cluster.certs import issue, make_ca
    ca = make_ca(tmp_path)
    server_pair = issue(tmp_path, "server", ca, "server", ["127.0.0.1"])
    target = "127.0.0.1:29203"
    front = _front.Front(target, 1 << 20, [], cert_pem=server_pair[0].read_bytes(),
                         key_pem=server_pair[1].read_bytes(), ca_pem=ca[0].read_bytes(), max_connections_per_client=1)
    stop = asyncio.Event()
    server = asyncio.ensure_future(echo(front, stop))
    credentials = grpc.ssl_channel_credentials(ca[0].read_bytes())
    first, second = _own_connection(target, credentials), _own_connection(target, credentials)
    try:
        assert await first.unary_unary(METHOD)(b"a", timeout=10) == b"echo a"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await second.unary_unary(METHOD)(b"b", timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 1 per client" in err.value.details()
        plain = _own_connection(target)  # TLS is still required
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await plain.unary_unary(METHOD)(b"c", timeout=3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await plain.close()
    finally:
        stop.set()
        await server
        await first.close()
        await second.close()
        front.shutdown(0.0)


async def test_send_many_shares_one_payload_among_many_streams(front_and_channel):
    """An item (prefix, suffix, [(id, middle), ...]) sends prefix + middle + suffix to each stream
    named (one revision's events for many watchers, copied by the front), in order with the
    batch's other items; unknown streams are reported, and a malformed item is a TypeError."""
    front, call = front_and_channel
    streams = [call.stream(silent()) for _ in range(3)]
    opened = [stream_id for stream_id, *_ in await take_calls(front, 3)]
    assert front.send_many([(stream_id, b"%d" % stream_id) for stream_id in opened]) == []
    by_id = {int(await asyncio.wait_for(s.read(), 5)): s for s in streams}  # which client stream is which id
    a, b, c = opened
    targets = [(a, b"<a1>"), (b, b"<b>"), (a, b"<a2>"), (10**9, b"<unknown>")]
    assert front.send_many([(c, b"first"), (b"head:", b":tail", targets), (a, b"last"), (b"h", b"t", [])],
                           1 << 20) == ([10**9], [])
    assert [await asyncio.wait_for(by_id[a].read(), 5) for _ in range(3)] == [
        b"head:<a1>:tail", b"head:<a2>:tail", b"last"]
    assert await asyncio.wait_for(by_id[b].read(), 5) == b"head:<b>:tail"
    assert await asyncio.wait_for(by_id[c].read(), 5) == b"first"
    for bad in ([(b"p", b"s", [(a, "not bytes")])], [(b"p", b"s", (a, b"m"))], [(b"p", b"s", [(a,)])],
                [(b"p", "not bytes", [(a, b"m")])], [(a, b"m", b"x", b"y")]):
        with pytest.raises(TypeError):
            front.send_many(bad)
    for s in streams:
        s.cancel()
