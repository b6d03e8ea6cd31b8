"""etcd's Watch on one node: watchers on key ranges, fed from the writes the KV store applies.

A watch stream holds any number of watchers. A watcher sees every write to its range from its
start revision on, exactly once and in order (revision, then the write's place in its request),
the writes of one revision in one response; one that starts in the past is caught up from the
store's history first, in responses of at most 1,000 revisions, then fed as writes are applied.
Every node feeds its own watchers from its own applied log, so a watcher on a follower sees the
same history as one on the leader, possibly later. Behaviour follows etcd 3.4's watch server
(etcdserver/api/v3rpc/watch.go and mvcc's watchable store): the responses to create and cancel,
automatic watch ids from 0 per stream, filters, prev_kv (the key at the revision before the
event, unless compacted), a start revision below the compaction point (canceled, with
compact_revision), a progress request (an empty response, watch_id -1, at the revision up to
which every event was sent), and progress notifications: every interval (etcd's
--experimental-watch-progress-notify-interval), an empty response at the current revision to
each watcher created with progress_notify that was sent nothing since the last one.

A stream whose client does not keep up is paused (by the caller, which sees its backlog): its
watchers get nothing more as writes are applied, and when it is resumed they are caught up from
the history, a bounded number of responses at a time, so a slow client never holds the node's
memory or turn; one whose next revision was compacted meanwhile is canceled with the
compaction point, as etcd does.

This module must never change the KV state or do I/O: it turns applied writes into responses.
"""

from __future__ import annotations

from dataclasses import dataclass

from verikv.etcdpb import kv_pb2, rpc_pb2
from verikv.shim.kv.protowire import varint

MAX_REVISIONS_PER_RESPONSE = 1000  # etcd's watchBatchMaxRevs, for a watcher catching up
DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
EMPTY_RANGE = "mvcc: watcher range is empty"
_NOPUT = rpc_pb2.WatchCreateRequest.NOPUT
_NODELETE = rpc_pb2.WatchCreateRequest.NODELETE


@dataclass(slots=True)
class Watcher:
    stream: int
    watch_id: int
    key: bytes
    range_end: bytes  # b"": the key alone; b"\0" (etcd's "from key"): every key from it on
    next_revision: int  # the first revision not yet sent
    no_put: bool
    no_delete: bool
    prev_kv: bool
    progress_notify: bool = False
    fragment: bool = False  # a response over the request limit may be split (see `fragments`)
    quiet: bool = True  # nothing was sent to it since the last progress notification
    id_field: bytes = b""  # its watch_id as a WatchResponse's field 2 (b"" for 0), encoded once

    def __post_init__(self) -> None:
        self.id_field = _WATCH_ID_TAG + varint(self.watch_id) if self.watch_id else b""

    def covers(self, key: bytes) -> bool:
        if not self.range_end:
            return key == self.key
        if self.range_end == b"\0":
            return key >= self.key
        return self.key <= key < self.range_end


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, range_end) every key with this prefix, as etcd's
    clients compute it (clientv3.GetPrefixRangeEnd): the prefix with its last byte below 0xff
    incremented and what follows it dropped. For a prefix of 0xff bytes only (or none) there is
    none: b"" here (etcd's clients send b"\0", every key from it on, a range compared like any
    other)."""
    end = prefix.rstrip(b"\xff")
    if not end:
        return b""
    return end[:-1] + bytes([end[-1] + 1])


class WatchHub:
    """The watchers of one node's watch streams (see the module's text). Every method returns
    the responses to send, as (stream, WatchResponse) in order; a header carries its revision
    only (the caller completes it)."""

    def __init__(self) -> None:
        self.streams: dict[int, dict[int, Watcher]] = {}
        self._next_auto: dict[int, int] = {}
        self.revision = 0  # every write up to this revision was sent to the watchers it concerns
        self.paused: set[int] = set()  # streams whose clients are behind (see the module's text)
        self.pauses = 0  # how many times a stream was paused
        # The live watchers (sent every write up to `revision`; those of paused streams are not
        # live) by their (key, range_end): a write reaches the watchers of its key and of the
        # ranges that hold it, not every watcher. A live watcher's next_revision is only a lower
        # bound (a start in the future); `_leave` makes it exact.
        self._live_by_range: dict[tuple[bytes, bytes], dict[tuple[int, int], Watcher]] = {}
        # the keys above with a range_end: a prefix's range (range_end the prefix's end, as
        # clients ask for a prefix) by its prefix, with how many of them have each length, so a
        # write finds its key's in one lookup per length; any other range in a list, each compared
        # (10,000 watchers on distinct prefixes cost every write 266 us while they were all there)
        self._prefixes: dict[bytes, tuple[bytes, bytes]] = {}
        self._prefix_lengths: dict[int, int] = {}
        self._ranges: list[tuple[bytes, bytes]] = []
        # of each range above: (the first start revision still in the future, the live
        # watchers whose start was reached, by filter: `_targets_of`)
        self._targets: dict[tuple[bytes, bytes], tuple[int, list[_Targets]]] = {}

    # ---- a stream's requests ----

    def request(self, stream: int, req: rpc_pb2.WatchRequest, store) -> list:
        which = req.WhichOneof("request_union")
        if which == "create_request":
            return self.create(stream, req.create_request, store)
        if which == "cancel_request":
            return self.cancel(stream, req.cancel_request.watch_id, store)
        if which == "progress_request":
            # every event up to the revision it names must have been sent before it: the writes
            # applied since the last `applied` first; a paused stream is behind, and gets none
            # (as etcd answers only once every watcher of the stream is in sync)
            out = self._catch_up(store)
            if stream in self.paused:
                return out
            return out + [(stream, _response(store.revision, watch_id=-1))]
        return []

    def create(self, stream: int, creq: rpc_pb2.WatchCreateRequest, store) -> list:
        out = self._catch_up(store)  # the others first get what was applied before this one
        watchers = self.streams.setdefault(stream, {})
        range_end = creq.range_end
        if range_end and range_end != b"\0" and range_end <= creq.key:
            return out + [(stream, _response(store.revision, watch_id=-1, created=True, canceled=True,
                                             cancel_reason=EMPTY_RANGE))]
        watch_id = creq.watch_id
        if watch_id == 0:  # etcd's AutoWatchID: the lowest free id from this stream's counter on
            watch_id = self._next_auto.get(stream, 0)
            while watch_id in watchers:
                watch_id += 1
            self._next_auto[stream] = watch_id + 1
        elif watch_id in watchers:
            return out + [(stream, _response(store.revision, watch_id=-1, created=True, canceled=True,
                                             cancel_reason=DUPLICATE_ID))]
        start = creq.start_revision if creq.start_revision > 0 else store.revision + 1
        filters = set(creq.filters)
        w = Watcher(stream, watch_id, creq.key, range_end, start, _NOPUT in filters, _NODELETE in filters,
                    creq.prev_kv, creq.progress_notify, creq.fragment)
        out.append((stream, _response(store.revision, watch_id=watch_id, created=True)))
        if start < store.compact_revision:
            out.append((stream, _response(0, watch_id=watch_id, canceled=True,
                                          compact_revision=store.compact_revision)))
            return out
        watchers[watch_id] = w
        if start <= store.revision:  # from the history, in batches
            writes = store.writes_between(start, store.revision, w.key, w.range_end)
            out += self._batches(w, writes, store, store.revision)
        if stream not in self.paused:
            self._join(w)
        return out

    def cancel(self, stream: int, watch_id: int, store) -> list:
        w = self.streams.get(stream, {}).get(watch_id)
        if w is None:
            return []  # etcd answers nothing for an unknown id
        self._forget(w)
        return [(stream, _response(store.revision, watch_id=watch_id, canceled=True))]

    def progress_tick(self, store) -> list:
        """Progress notifications, due every interval (see the module's text), after the events
        they cover; none to a paused stream's watchers (they are behind)."""
        out = self._catch_up(store)
        for stream, ws in self.streams.items():
            for w in ws.values():
                if w.progress_notify and w.quiet and stream not in self.paused:
                    out.append((w.stream, _response(store.revision, watch_id=w.watch_id)))
                w.quiet = True
        return out

    def close(self, stream: int) -> None:
        """The stream is over: its watchers go."""
        for w in self.streams.pop(stream, {}).values():
            self._leave(w)
        self._next_auto.pop(stream, None)
        self.paused.discard(stream)

    def pause(self, stream: int) -> None:
        """The stream's client is behind: send its watchers nothing more until `resume`."""
        if stream in self.streams and stream not in self.paused:
            self.paused.add(stream)
            self.pauses += 1
            for w in self.streams[stream].values():
                self._leave(w)

    def resume(self, stream: int, store, max_responses: int) -> list:
        """Catch the paused stream's watchers up from the history, at most `max_responses`
        responses per watcher; the stream is live again once all of them are caught up."""
        out, behind = [], False
        ws = self.streams.get(stream, {})
        for w in list(ws.values()):
            out += self._catch_up_one(ws, w, store, max_responses)
            behind |= w.watch_id in ws and w.next_revision <= store.revision
        if not behind:
            self.paused.discard(stream)
            for w in ws.values():
                self._join(w)
        return out

    def fragmenting(self, stream: int, watch_id: int) -> bool:
        """The watcher asked for large responses to be split (etcd's `fragment`)."""
        w = self.streams.get(stream, {}).get(watch_id)
        return w is not None and w.fragment

    # ---- the live watchers' index ----

    def _join(self, w: Watcher) -> None:
        """w was sent everything up to `revision`: from now on it is fed as writes apply."""
        group = (w.key, w.range_end)
        self._targets.pop(group, None)
        members = self._live_by_range.get(group)
        if members is None:
            members = self._live_by_range[group] = {}
            if w.range_end and w.range_end == prefix_end(w.key):
                self._prefixes[w.key] = group
                self._prefix_lengths[len(w.key)] = self._prefix_lengths.get(len(w.key), 0) + 1
            elif w.range_end:
                self._ranges.append(group)
        members[(w.stream, w.watch_id)] = w

    def _leave(self, w: Watcher) -> None:
        """w is no longer fed live (if it was): its next_revision becomes exact."""
        group = (w.key, w.range_end)
        members = self._live_by_range.get(group)
        if members is None or members.pop((w.stream, w.watch_id), None) is None:
            return
        self._targets.pop(group, None)
        w.next_revision = max(w.next_revision, self.revision + 1)
        if not members:
            del self._live_by_range[group]
            if w.range_end and w.range_end == prefix_end(w.key):
                del self._prefixes[w.key]
                n = len(w.key)
                self._prefix_lengths[n] -= 1
                if not self._prefix_lengths[n]:
                    del self._prefix_lengths[n]
            elif w.range_end:
                self._ranges.remove(group)

    def _forget(self, w: Watcher) -> None:
        self._leave(w)
        del self.streams[w.stream][w.watch_id]

    # ---- applied writes ----

    def applied(self, store, writes: list, fan_out: bool = False) -> list:
        """The store applied `writes` (its take_recent()) since the last call: the responses for
        every watcher, one per revision. If the store changed otherwise (a snapshot installed
        from a peer), the watchers are caught up from its history instead. With `fan_out`, the
        live watchers' responses come as FanOut items, one per range, revision and filter
        (the others still as (stream, response))."""
        if not self.streams:
            self.revision = store.revision
            return []
        if writes and writes[0][1].mod_revision == self.revision + 1 \
                and writes[-1][1].mod_revision == store.revision:
            out = self._live(writes, store, fan_out)
            self.revision = store.revision
            return out
        if store.revision == self.revision and not writes:
            return []
        return self._catch_up(store)

    def _live(self, writes: list, store, fan_out: bool) -> list:
        """The live watchers' responses to `writes`, one per watcher and revision. A revision's
        events are encoded once for all the watchers of one range that want the same ones (a
        FanOut; with `fan_out`, returned as such)."""
        out = []
        by_range, ranges = self._live_by_range, self._ranges
        prefixes, lengths = self._prefixes, self._prefix_lengths
        start = 0
        while start < len(writes):  # one revision at a time
            rev = writes[start][1].mod_revision
            end = start + 1
            while end < len(writes) and writes[end][1].mod_revision == rev:
                end += 1
            touched: dict[tuple[bytes, bytes], list] = {}  # range: its writes in this revision
            for write in writes[start:end]:
                key = write[0]
                if (key, b"") in by_range:
                    touched.setdefault((key, b""), []).append(write)
                for n in lengths:
                    if n <= len(key):  # (a shorter key would be looked up whole: another length's)
                        group = prefixes.get(key[:n])
                        if group is not None:
                            touched.setdefault(group, []).append(write)
                for group in ranges:
                    lo, hi = group
                    if lo <= key and (hi == b"\0" or key < hi):
                        touched.setdefault(group, []).append(write)
            for group, group_writes in touched.items():
                for t in self._targets_of(group, rev):
                    events = _encoded_events(t.watchers[0], group_writes, store)
                    if events:
                        for w in t.notify:
                            w.quiet = False
                        f = FanOut(rev, events, t)
                        if fan_out:
                            out.append(f)
                        else:
                            out += f.responses()
            start = end
        return out

    def _targets_of(self, group: tuple[bytes, bytes], rev: int) -> list[_Targets]:
        """The live watchers of `group` that revision `rev` reaches (not those that start
        later), by what they want of it; kept until a watcher joins or leaves the group, or a
        later start is reached. (A catch-up needs no refresh: it moves a watcher's next revision
        up to the store's next one at most, which a watcher reached already reaches, and a
        watcher whose start it passed is past the kept `until`.)"""
        cached = self._targets.get(group)
        if cached is None or rev >= cached[0]:
            until, by_variant = 1 << 63, {}
            for w in self._live_by_range[group].values():
                if rev < w.next_revision:
                    until = min(until, w.next_revision)  # a start in the future
                    continue
                variant = (w.no_put, w.no_delete, w.prev_kv)
                t = by_variant.get(variant)
                if t is None:
                    t = by_variant[variant] = _Targets([], [], [])
                t.watchers.append(w)
                t.ids.append((w.stream, w.id_field))
                if w.progress_notify:
                    t.notify.append(w)
            cached = self._targets[group] = (until, list(by_variant.values()))
        return cached[1]

    def _catch_up(self, store) -> list:
        """Every watcher behind the store's revision gets what it missed from the history (or
        is canceled with the compaction point if that history is gone); paused streams wait for
        their resume."""
        out = []
        if store.revision != self.revision:
            for stream, ws in self.streams.items():
                if stream not in self.paused:
                    for w in list(ws.values()):
                        w.next_revision = max(w.next_revision, self.revision + 1)  # exact (see _leave)
                        out += self._catch_up_one(ws, w, store)
        self.revision = store.revision
        return out

    def _catch_up_one(self, ws: dict, w: Watcher, store, max_responses: int | None = None) -> list:
        if w.next_revision > store.revision:
            return []
        if w.next_revision < store.compact_revision:
            self._forget(w)
            return [(w.stream, _response(0, watch_id=w.watch_id, canceled=True,
                                         compact_revision=store.compact_revision))]
        writes = store.writes_between(w.next_revision, store.revision, w.key, w.range_end)
        return self._batches(w, writes, store, store.revision, max_responses)

    def _batches(self, w: Watcher, writes: list, store, upto: int, max_responses: int | None = None) -> list:
        """A catching-up watcher's events up to revision `upto`, at most
        MAX_REVISIONS_PER_RESPONSE revisions per response (and at most `max_responses`
        responses: it then stays behind, at the first revision not sent)."""
        out, events, revisions, last = [], [], 0, None
        for k, rec, prev in writes:
            if not _wants(w, k, rec):
                continue
            if rec.mod_revision != last:
                if revisions == MAX_REVISIONS_PER_RESPONSE:
                    out.append((w.stream, _response(upto, watch_id=w.watch_id, events=events, w=w)))
                    events, revisions = [], 0
                    if max_responses is not None and len(out) == max_responses:
                        w.next_revision = rec.mod_revision
                        w.quiet = False
                        return out
                revisions += 1
                last = rec.mod_revision
            events.append(_event(k, rec, prev, store))
        if events:
            out.append((w.stream, _response(upto, watch_id=w.watch_id, events=events, w=w)))
        if out:
            w.quiet = False
        w.next_revision = upto + 1
        return out


def _wants(w: Watcher, key: bytes, rec) -> bool:
    if not w.covers(key):
        return False
    return not (w.no_delete if rec.version == 0 else w.no_put)


@dataclass(slots=True)
class _Targets:
    """Live watchers of one range that want the same events of a revision (the same filters and
    prev_kv): each as itself, and as (stream, watch_id field) for the front (see FanOut)."""
    watchers: list[Watcher]
    ids: list[tuple[int, bytes]]
    notify: list[Watcher]  # those created with progress_notify (see progress_tick)


class FanOut:
    """One revision's events for every watcher of a _Targets: each watcher's response is a header,
    its watch_id field and these events. A put's events for a thousand watchers of one prefix
    are one object, copied per watcher by the front (`send_many`), not by Python."""

    __slots__ = ("revision", "events", "targets")

    def __init__(self, revision: int, events: bytes, targets: _Targets):
        self.revision = revision
        self.events = events
        self.targets = targets

    def responses(self) -> list:
        """The same, as (stream, LiveResponse) for each watcher."""
        return [(w.stream, LiveResponse(self.revision, w.watch_id, self.events, w.id_field))
                for w in self.targets.watchers]


class LiveResponse:
    """A live watcher's response to one revision: its events already encoded, shared with every
    watcher of the same range that wants the same ones (`bytes` completes it with a header)."""

    __slots__ = ("revision", "watch_id", "events", "id_field")

    def __init__(self, revision: int, watch_id: int, events: bytes, id_field: bytes | None = None):
        self.revision = revision
        self.watch_id = watch_id
        self.events = events  # WatchResponse field 11, once per event
        if id_field is None:
            id_field = _WATCH_ID_TAG + varint(watch_id) if watch_id else b""
        self.id_field = id_field  # watch_id as field 2 (the watcher's, encoded once)

    def bytes(self, header: bytes) -> bytes:
        """The response, given its header encoded as field 1."""
        return header + self.id_field + self.events

    def response(self) -> rpc_pb2.WatchResponse:
        """The same response as a message (its header carries the revision only)."""
        resp = rpc_pb2.WatchResponse.FromString(self.events)
        resp.watch_id = self.watch_id
        resp.header.revision = self.revision
        return resp


def as_response(resp) -> rpc_pb2.WatchResponse:
    """Any response of the hub as a message."""
    return resp.response() if type(resp) is LiveResponse else resp


def fragments(resp: rpc_pb2.WatchResponse, limit: int) -> list[rpc_pb2.WatchResponse]:
    """etcd's sendFragments: a response of at least `limit` bytes with more than one event is
    split into responses of as many events as fit below `limit` (at least one each), all but the
    last marked `fragment`; clients join them back."""
    if resp.ByteSize() < limit or len(resp.events) < 2:
        return [resp]
    out, events = [], list(resp.events)
    idx = 0
    while idx < len(events):
        cur = rpc_pb2.WatchResponse()
        cur.CopyFrom(resp)
        del cur.events[:]
        cur.fragment = True
        for ev in events[idx:]:
            cur.events.append(ev)
            if len(cur.events) > 1 and cur.ByteSize() >= limit:
                del cur.events[-1]
                break
            idx += 1
        if idx == len(events):
            cur.fragment = False
        out.append(cur)
    return out


def _encoded_events(w: Watcher, writes: list, store) -> bytes:
    resp = rpc_pb2.WatchResponse()
    for k, rec, prev in writes:
        if _wants(w, k, rec):
            ev, prev_kv = _event(k, rec, prev, store)
            if w.prev_kv and prev_kv is not None:
                ev.prev_kv.CopyFrom(prev_kv)
            resp.events.append(ev)
    return resp.SerializeToString()  # only the events: field 11 each


_WATCH_ID_TAG = b"\x10"  # WatchResponse.watch_id: field 2, varint


def _event(key: bytes, rec, prev, store):
    """(event, its prev_kv or None): etcd's event for one write."""
    if rec.version == 0:  # a delete: the key and the revision of the delete only
        ev = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=key, mod_revision=rec.mod_revision))
    else:
        ev = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=_key_value(key, rec))
    # etcd reads prev_kv at the revision before the event, which fails below the compaction point
    prev_kv = _key_value(key, prev) if prev is not None and rec.mod_revision - 1 >= store.compact_revision else None
    return ev, prev_kv


def _key_value(key: bytes, rec) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=key, create_revision=rec.create_revision, mod_revision=rec.mod_revision,
                           version=rec.version, value=rec.value, lease=rec.lease)


def _response(revision: int, *, watch_id: int, events=(), w: Watcher | None = None, **fields) -> rpc_pb2.WatchResponse:
    resp = rpc_pb2.WatchResponse(watch_id=watch_id, **fields)
    resp.header.revision = revision
    for ev, prev_kv in events:
        if w is not None and w.prev_kv and prev_kv is not None:
            ev.prev_kv.CopyFrom(prev_kv)
        resp.events.append(ev)
    return resp
