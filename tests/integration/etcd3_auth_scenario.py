"""A client program written with Debian's python3-etcd3, unmodified, with `user` and `password`,
run in its own process by test_auth_clients.py (etcd3 carries its own copy of etcd's protobufs, which
cannot share a process with verikv's). It prints what it saw as one JSON object, the token its
client got included (test_auth_clients.py uses it on the other nodes).

python3-etcd3 sends its token as call credentials, which gRPC sends only over TLS: the cluster
serves clients over TLS (CA, client certificate and key for the channel).

Usage: python3 etcd3_auth_scenario.py HOST PORT USER PASSWORD CA CERT KEY
"""

import json
import sys

import etcd3
import grpc


def main(host: str, port: int, user: str, password: str, ca: str, cert: str, key: str) -> dict:
    seen: dict = {}
    tls = dict(ca_cert=ca, cert_cert=cert, cert_key=key)
    client = etcd3.client(host=host, port=port, user=user, password=password, timeout=10, **tls)
    seen["token"] = dict(client.metadata)["token"]
    client.put("app/b", "2")
    seen["get"] = client.get("app/b")[0].decode()
    seen["config"] = client.get("config")[0].decode()
    try:
        client.put("config", "v3")
        seen["put config"] = "accepted"
    except grpc.RpcError as err:  # python3-etcd3 passes PERMISSION_DENIED on as it is
        seen["put config"] = [err.code().name, err.details()]
    try:
        etcd3.client(host=host, port=port, user=user, password="wrong", timeout=10, **tls)
        seen["wrong password"] = "accepted"
    except grpc.RpcError as err:
        seen["wrong password"] = [err.code().name, err.details()]
    client.close()
    return seen


if __name__ == "__main__":
    host, port, user, password, ca, cert, key = sys.argv[1:]
    print(json.dumps(main(host, int(port), user, password, ca, cert, key)))
