"""A client program written with Debian's python3-etcd3, unmodified, run in its own process by
test_python_etcd3.py (etcd3 carries its own copy of etcd's protobufs, which cannot share a
process with verikv's). It prints what it saw as one JSON object.

Usage: python3 etcd3_scenario.py HOST PORT
"""

import json
import sys
import threading

import etcd3


def main(host: str, port: int) -> dict:
    client = etcd3.client(host=host, port=port, timeout=10)
    seen: dict = {}
    client.put("app/a", "1")
    client.put("app/b", "2")
    value, meta = client.get("app/a")
    seen["get"] = [value.decode(), meta.version]
    seen["prefix"] = sorted([m.key.decode(), v.decode()] for v, m in client.get_prefix("app/"))
    ok, _ = client.transaction(compare=[client.transactions.value("app/a") == "1"],
                               success=[client.transactions.put("app/a", "3")], failure=[])
    seen["txn"] = [ok, client.get("app/a")[0].decode()]
    seen["delete"] = [client.delete("app/b"), client.get("app/b") == (None, None)]
    revision = client.get("app/a")[1].mod_revision
    client.compact(revision)
    try:
        client.compact(revision)
        seen["compact_twice"] = "no error"
    except Exception as err:  # noqa: BLE001 - what the client raised is the finding
        seen["compact_twice"] = f"{type(err).__name__}: {err}"

    events = []
    iterator, cancel = client.watch_prefix("w/")
    done = threading.Event()

    def consume():
        for event in iterator:
            events.append([type(event).__name__, event.key.decode(), event.value.decode()])
            if len(events) == 3:
                break
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    client.put("w/a", "1")
    client.put("elsewhere", "x")
    client.put("w/b", "2")
    client.delete("w/a")
    done.wait(15)
    cancel()
    seen["watch_prefix"] = events

    threading.Timer(0.5, lambda: client.put("once", "v")).start()
    event = client.watch_once("once", timeout=10)
    seen["watch_once"] = [type(event).__name__, event.key.decode(), event.value.decode()]

    # leases: grant, puts with a lease, refresh, time left, keys, revoke
    lease = client.lease(30)
    client.put("leased/a", "1", lease=lease)
    client.put("leased/b", "2", lease=lease)
    refreshed = [r.TTL for r in lease.refresh()]
    seen["lease"] = [lease.granted_ttl, refreshed, 25 <= lease.remaining_ttl <= 30,
                     sorted(k.decode() for k in lease.keys)]
    lease.revoke()
    seen["after_revoke"] = [len(list(client.get_prefix("leased/"))), client.get("leased/a")[0]]
    client.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
