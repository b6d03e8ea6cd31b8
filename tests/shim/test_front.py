"""The grpc++ client front (shim/_front) on its own: `finish` queues answers that the front's
completion-queue thread sends in batches, so every call gets exactly its own answer or status,
a call is answered once, and answers queued just before a shutdown still reach their clients."""

import asyncio

import grpc
import pytest

from verikv.shim.api import _front

PORT = 25480
METHOD = "/test.Echo/Echo"


async def take_calls(front, n: int) -> list[tuple[int, str, bytes]]:
    """The next n calls the front accepted, waiting on its eventfd like the server does."""
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
    return calls


@pytest.fixture
async def front_and_channel():
    front = _front.Front(f"127.0.0.1:{PORT}", 1 << 20)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{PORT}")
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    yield front, call
    await channel.close()
    front.shutdown(0.0)


async def test_many_calls_answered_in_one_batch_each_get_their_own_answer(front_and_channel):
    front, call = front_and_channel
    n = 300
    pending = [asyncio.ensure_future(call(b"q%d" % i, timeout=20)) for i in range(n)]
    calls = await take_calls(front, n)
    assert sorted(body for _, _, body in calls) == sorted(b"q%d" % i for i in range(n))
    assert {method for _, method, _ in calls} == {METHOD}
    for call_id, _, body in calls:  # all queued before the front's thread runs again
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
    calls = {body: call_id for call_id, _, body in await take_calls(front, 2)}
    assert front.finish(calls[b"answered"], 0, "", b"the answer")
    await asyncio.get_running_loop().run_in_executor(None, front.shutdown, 0.5)
    assert await answered == b"the answer"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await waiting
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not front.finish(calls[b"waiting"], 0, "", b"too late")
