"""`verikv cluster up|status|down`: a local 3-node verikv cluster on loopback, in the background.

Everything lives under one directory (default ./.verikv): cluster.json (the ports, fixed when the
directory is first used), nodeN/ (WAL and snapshots), nodeN.log, nodeN.pid. `up` is idempotent:
running nodes are left alone, stopped ones are (re)started; it returns once a leader is elected.
Node N serves clients on base_port + N, peers on base_port + 10 + N, and /metrics and /health
on base_port + 5 + N (etcd's --listen-metrics-urls; plain HTTP). `status --watch` refreshes a
live view (cluster/top.py).

Placement (optional, fixed with the ports when the directory is first used): `--node-hosts
H0,H1,H2` gives node N its own address HN for clients and peers (default 127.0.0.1 for all), and
`--netns NS0,NS1,NS2` (or `--netns-prefix P`, meaning namespaces P1, P2, P3) launches node N with
`ip netns exec NSN`, so its peer connections leave from HN, the namespace's address. The
namespaces and addresses must already exist; `verikv jepsen` creates them for partition tests.

TLS (optional, fixed when the directory is first used): `--tls` makes a local CA and one
certificate per node under certs/ (cluster/certs.py) and starts every node with client TLS
requiring client certificates and with mutual peer TLS; `status` and `up` then talk to the nodes
with certs/client.pem, and `up` prints the etcdctl flags to use.

This module must never stop a process it cannot prove is one of this directory's nodes (the pid
file's process must be a `verikv serve` with this directory's node data dir), and must never show
a traceback for an expected failure: a message on stderr and exit code 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLUSTER_SIZE = 3
DEFAULT_BASE_PORT = 32379
DEFAULT_DATA_DIR = Path(".verikv")
# `cluster up` flags handed to every node's `verikv serve` as they are: (flag, type, what it is)
SERVE_FLAGS = [
    ("snapshot-count", int, "etcd's: a node snapshots after at most this many slots"),
    ("auto-compaction-mode", str, "etcd's: periodic or revision"),
    ("auto-compaction-retention", str, "etcd's: the history kept"),
    ("experimental-watch-progress-notify-interval", str, "etcd's"),
    ("auth-token-ttl", int, "etcd's: seconds an unused simple token lives"),
    ("auth-max-failures", int, "failed Authenticate calls per user name and window"),
    ("auth-failure-window", float, "seconds"),
    ("max-concurrent-streams", int, "etcd 3.5's: calls one client connection may have open"),
    ("max-connections-per-client", int, "connections one client address may have open"),
    ("client-cert-allowed-hostname", str, "with --tls: a name every client certificate must be valid for"),
    ("cpu-scheduling", str, "loop-first (default), normal or batch: which of the nodes' threads run under "
                            "Linux's SCHED_BATCH"),
    ("log-level", str, "DEBUG, INFO, WARNING, ERROR"),
]


class ClusterError(Exception):
    """An expected failure, reported as one message."""


def _split_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")]
    if len(items) != CLUSTER_SIZE or not all(items):
        raise ClusterError(f"{what} needs {CLUSTER_SIZE} comma-separated values, got {text!r}")
    return items


def _layout(data_dir: Path, base_port: int | None, hosts: list[str] | None = None,
            netns: list[str] | None = None, tls: bool = False) -> dict:
    data_dir.mkdir(parents=True, exist_ok=True)
    conf_path = data_dir / "cluster.json"
    if conf_path.exists():
        try:
            conf = json.loads(conf_path.read_text())
        except (OSError, ValueError) as err:
            raise ClusterError(f"{conf_path} is unreadable ({err}); remove it to start afresh")
        if base_port is not None and base_port != conf["base_port"]:
            raise ClusterError(f"{data_dir} was set up with --base-port {conf['base_port']}, not {base_port}")
        if hosts is not None and hosts != conf.get("hosts", ["127.0.0.1"] * conf["size"]):
            raise ClusterError(f"{data_dir} was set up with --node-hosts "
                               f"{','.join(conf.get('hosts', ['127.0.0.1'] * conf['size']))}, not {','.join(hosts)}")
        if netns is not None and netns != conf.get("netns"):
            raise ClusterError(f"{data_dir} was set up with --netns {','.join(conf.get('netns') or ['(none)'])}, "
                               f"not {','.join(netns)}")
        if tls and not conf.get("tls"):
            raise ClusterError(f"{data_dir} was set up without --tls; use another --data-dir for a TLS cluster")
        return conf
    conf = {"base_port": base_port or DEFAULT_BASE_PORT, "size": CLUSTER_SIZE, "metrics": True}
    if tls:
        conf["tls"] = True
    if hosts is not None:
        conf["hosts"] = hosts
    if netns is not None:
        conf["netns"] = netns
    conf_path.write_text(json.dumps(conf) + "\n")
    return conf


def node_host(conf: dict, i: int) -> str:
    hosts = conf.get("hosts")
    return hosts[i] if hosts else "127.0.0.1"


def client_endpoint(conf: dict, i: int) -> str:
    return f"{node_host(conf, i)}:{conf['base_port'] + i}"


def peer_address(conf: dict, i: int) -> str:
    return f"{node_host(conf, i)}:{conf['base_port'] + 10 + i}"


def metrics_address(conf: dict, i: int) -> str | None:
    """HOST:PORT of node i's /metrics and /health; None for a cluster set up before they were served."""
    return f"{node_host(conf, i)}:{conf['base_port'] + 5 + i}" if conf.get("metrics") else None


def certs_dir(data_dir: Path) -> Path:
    return (data_dir / "certs").resolve()


def tls_files(data_dir: Path, conf: dict) -> dict | None:
    """The TLS files of a --tls cluster (made on first use), None for a plain one."""
    if not conf.get("tls"):
        return None
    from verikv.cluster.certs import cluster_certs
    peers = [tuple(peer_address(conf, i).rsplit(":", 1)) for i in range(conf["size"])]
    return cluster_certs(certs_dir(data_dir), [(h, int(p)) for h, p in peers])


def client_channel(data_dir: Path, conf: dict, i: int):
    """A gRPC channel to node i's client port (over TLS, with the client certificate, for --tls)."""
    import grpc
    files = tls_files(data_dir, conf)
    if files is None:
        return grpc.insecure_channel(client_endpoint(conf, i))
    creds = grpc.ssl_channel_credentials(root_certificates=files["ca"].read_bytes(),
                                         private_key=files["client"][1].read_bytes(),
                                         certificate_chain=files["client"][0].read_bytes())
    return grpc.secure_channel(client_endpoint(conf, i), creds)


def etcdctl_flags(data_dir: Path, conf: dict) -> str:
    """What etcdctl needs to reach the cluster (--endpoints, and the TLS files for --tls)."""
    files = tls_files(data_dir, conf)
    scheme = "https://" if files else ""
    flags = "--endpoints " + ",".join(scheme + client_endpoint(conf, i) for i in range(conf["size"]))
    if files:
        flags += f" --cacert {files['ca']} --cert {files['client'][0]} --key {files['client'][1]}"
    return flags


def _node_dir(data_dir: Path, i: int) -> Path:
    return (data_dir / f"node{i}").resolve()


def _pid_path(data_dir: Path, i: int) -> Path:
    return data_dir / f"node{i}.pid"


def running_pid(data_dir: Path, i: int) -> int | None:
    """The pid of node i if its pid file names a live `verikv serve` of this directory."""
    try:
        pid = int(_pid_path(data_dir, i).read_text().strip())
        for _ in range(50):  # a process that has just exec'd shows an empty cmdline for a moment
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmdline:
                break
            time.sleep(0.01)
        cmdline = cmdline.split(b"\0")
    except (OSError, ValueError):
        return None
    args = [a.decode(errors="replace") for a in cmdline]
    if "serve" in args and str(_node_dir(data_dir, i)) in args:
        try:  # a zombie child of ours counts as stopped
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return None
        except (OSError, IndexError):
            pass
        return pid
    return None


def _start_node(data_dir: Path, conf: dict, i: int, extra_args: list[str]) -> int:
    peers = ",".join(peer_address(conf, j) for j in range(conf["size"]))
    files = tls_files(data_dir, conf)
    scheme = "https://" if files else ""
    urls = ",".join(scheme + client_endpoint(conf, j) for j in range(conf["size"]))
    tls_args = []
    if files:
        cert, key = (str(p) for p in files["nodes"][i])
        ca = str(files["ca"])
        tls_args = ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
                    "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
                    "--peer-client-cert-auth"]
    metrics = metrics_address(conf, i)
    metrics_args = ["--listen-metrics-urls", f"http://{metrics}"] if metrics else []
    cmd = [sys.executable, "-m", "verikv.cli", "serve", "--id", str(i), "--peers", peers,
           "--client-listen", client_endpoint(conf, i), "--client-urls", urls,
           "--data-dir", str(_node_dir(data_dir, i)), *tls_args, *metrics_args, *extra_args]
    if conf.get("netns"):
        cmd = ["ip", "netns", "exec", conf["netns"][i], *cmd]  # exec's in place: same pid
    with open(data_dir / f"node{i}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    _pid_path(data_dir, i).write_text(f"{proc.pid}\n")
    return proc.pid


def node_status(data_dir: Path, conf: dict, i: int, timeout_s: float = 1.0) -> dict | None:
    """Maintenance.Status of node i, or None if it does not answer."""
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    try:
        with client_channel(data_dir, conf, i) as ch:
            resp = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=timeout_s)
    except grpc.RpcError:
        return None
    member_id = resp.header.member_id
    role = "leader" if resp.leader and resp.leader == member_id else ("follower" if resp.leader else "no leader")
    return {"role": role, "leader_member_id": resp.leader, "committed_slot": resp.raftIndex,
            "applied_slot": resp.raftAppliedIndex, "revision": resp.header.revision, "term": resp.raftTerm}


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def cmd_up(args) -> int:
    data_dir = args.data_dir
    hosts = _split_list(args.node_hosts, "--node-hosts")
    if args.netns is not None and args.netns_prefix is not None:
        raise ClusterError("give --netns or --netns-prefix, not both")
    netns = _split_list(args.netns, "--netns")
    if args.netns_prefix is not None:
        netns = [f"{args.netns_prefix}{i + 1}" for i in range(CLUSTER_SIZE)]
    conf = _layout(data_dir, args.base_port, hosts, netns, args.tls)
    changed = False
    if args.faulty_disk and not conf.get("faulty_disk"):
        conf["faulty_disk"] = True  # kept for restarts, like the placement
        changed = True
    if args.quota_backend_bytes is not None and args.quota_backend_bytes != conf.get("quota_backend_bytes"):
        conf["quota_backend_bytes"] = args.quota_backend_bytes  # for the nodes started from now on
        changed = True
    if args.auth_token is not None and args.auth_token != conf.get("auth_token"):
        conf["auth_token"] = args.auth_token  # for the nodes started from now on
        changed = True
    for flag in ("client_crl_file", "peer_crl_file"):
        path = getattr(args, flag)
        if path is None:
            continue
        if not conf.get("tls"):
            raise ClusterError(f"--{flag.replace('_', '-')} needs a cluster made with --tls")
        path = str(Path(path).resolve()) if path else ""  # "" drops it
        if path != conf.get(flag, ""):
            conf[flag] = path  # for the nodes started from now on
            changed = True
    if args.client_cert_allowed_hostname is not None and not conf.get("tls"):
        raise ClusterError("--client-cert-allowed-hostname needs a cluster made with --tls")
    flags = dict(conf.get("serve_flags", {}))
    for flag, _, _ in SERVE_FLAGS:
        value = getattr(args, flag.replace("-", "_"))
        if value is not None and flags.get(flag) != str(value):
            flags[flag] = str(value)  # for the nodes started from now on
            changed = True
    conf["serve_flags"] = flags
    if changed:
        (data_dir / "cluster.json").write_text(json.dumps(conf) + "\n")
    extra = ["--no-runtime-checks"] if args.no_runtime_checks else []
    for flag, value in flags.items():
        extra += [f"--{flag}", value]
    if conf.get("faulty_disk"):
        extra.append("--faulty-disk")
    if conf.get("quota_backend_bytes") is not None:
        extra += ["--quota-backend-bytes", str(conf["quota_backend_bytes"])]
    if conf.get("auth_token") is not None:
        extra += ["--auth-token", conf["auth_token"]]
    for flag in ("client_crl_file", "peer_crl_file"):
        if conf.get(flag):
            extra += [f"--{flag.replace('_', '-')}", conf[flag]]
    for i in range(conf["size"]):
        pid = running_pid(data_dir, i)
        if pid is not None:
            print(f"node {i} already running (pid {pid})")
        else:
            print(f"node {i} started (pid {_start_node(data_dir, conf, i, extra)})")
    deadline = time.monotonic() + args.timeout_s
    while True:
        for i in range(conf["size"]):
            if running_pid(data_dir, i) is None:
                raise ClusterError(f"node {i} exited while starting; last lines of "
                                   f"{data_dir / f'node{i}.log'}:\n{_tail(data_dir / f'node{i}.log')}")
        statuses = [node_status(data_dir, conf, i) for i in range(conf["size"])]
        leaders = [i for i, s in enumerate(statuses) if s and s["role"] == "leader"]
        if leaders:
            break
        if time.monotonic() > deadline:
            raise ClusterError(f"no leader elected within {args.timeout_s} s; logs in {data_dir}/node*.log")
        time.sleep(0.1)
    print(f"leader: node {leaders[0]}")
    print("client endpoints: " + ",".join(client_endpoint(conf, i) for i in range(conf["size"])))
    if conf.get("tls"):
        print(f"etcdctl flags: {etcdctl_flags(data_dir, conf)}")
    return 0


def cmd_status(args) -> int:
    data_dir = args.data_dir
    if not (data_dir / "cluster.json").exists():
        raise ClusterError(f"no cluster in {data_dir} (run `verikv cluster up --data-dir {data_dir}`)")
    conf = _layout(data_dir, None)

    def read_nodes() -> list[dict]:
        rows = []
        for i in range(conf["size"]):
            pid = running_pid(data_dir, i)
            st = node_status(data_dir, conf, i) if pid is not None else None
            rows.append({"id": i, "pid": pid, "endpoint": client_endpoint(conf, i),
                         "role": st["role"] if st else ("unreachable" if pid else "stopped"),
                         "committed_slot": st["committed_slot"] if st else None,
                         "applied_slot": st["applied_slot"] if st else None,
                         "revision": st["revision"] if st else None})
        return rows

    if args.watch is not None:
        from verikv.cluster import top
        if args.watch <= 0:
            raise ClusterError("--watch takes a positive number of seconds")
        urls = [f"http://{a}/metrics" if a else None for a in (metrics_address(conf, i) for i in range(conf["size"]))]
        return top.watch(data_dir, read_nodes, urls, args.watch, args.count, args.json)
    rows = read_nodes()
    if args.json:
        print(json.dumps({"data_dir": str(data_dir.resolve()), "nodes": rows}, indent=2))
    else:
        print(f"{'id':>2}  {'pid':>7}  {'endpoint':<21}  {'role':<11}  {'committed':>9}  {'revision':>8}")
        for row in rows:
            print(f"{row['id']:>2}  {row['pid'] or '-':>7}  {row['endpoint']:<21}  {row['role']:<11}  "
                  f"{row['committed_slot'] if row['committed_slot'] is not None else '-':>9}  "
                  f"{row['revision'] if row['revision'] is not None else '-':>8}")
    return 0


def cmd_down(args) -> int:
    data_dir = args.data_dir
    if not (data_dir / "cluster.json").exists():
        print(f"no cluster in {data_dir}")
        return 0
    conf = _layout(data_dir, None)
    pids = {}
    for i in range(conf["size"]):
        pid = running_pid(data_dir, i)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            pids[i] = pid
    deadline = time.monotonic() + args.timeout_s
    for i, pid in pids.items():
        while running_pid(data_dir, i) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if running_pid(data_dir, i) is not None:
            os.kill(pid, signal.SIGKILL)
            print(f"node {i} (pid {pid}) did not stop in {args.timeout_s} s: killed")
        else:
            print(f"node {i} (pid {pid}) stopped")
    for i in range(conf["size"]):
        if running_pid(data_dir, i) is None:
            _pid_path(data_dir, i).unlink(missing_ok=True)
    if not pids:
        print("no node was running")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verikv cluster", description="a local 3-node verikv cluster")
    sub = p.add_subparsers(dest="command", required=True)
    for name, func, help_text in [("up", cmd_up, "start the nodes that are not running; wait for a leader"),
                                  ("status", cmd_status, "show each node"),
                                  ("down", cmd_down, "stop every node")]:
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                       help=f"where logs, pid files and data live (default {DEFAULT_DATA_DIR})")
        s.set_defaults(func=func)
        if name == "up":
            s.add_argument("--base-port", type=int, default=None,
                           help=f"clients on BASE..BASE+2, metrics on BASE+5..BASE+7, peers on BASE+10..BASE+12 "
                                f"(default {DEFAULT_BASE_PORT})")
            s.add_argument("--timeout-s", type=float, default=30.0)
            s.add_argument("--no-runtime-checks", action="store_true")
            s.add_argument("--node-hosts", default=None, metavar="H0,H1,H2",
                           help="each node's own address for clients and peers (default 127.0.0.1)")
            s.add_argument("--netns", default=None, metavar="NS0,NS1,NS2",
                           help="run node N inside network namespace NSN (`ip netns exec`; needs root)")
            s.add_argument("--netns-prefix", default=None, metavar="P",
                           help="same as --netns P1,P2,P3")
            s.add_argument("--faulty-disk", action="store_true",
                           help="run the nodes on the fault-injecting disk (`verikv serve --faulty-disk`: "
                                "a kill loses unsynced writes; fsync fails while NODE_DIR/fail-fsync exists)")
            s.add_argument("--quota-backend-bytes", type=int, default=None, metavar="BYTES",
                           help="each node's store quota (etcd's flag; kept in cluster.json for restarts; "
                                "a running node keeps the quota it started with)")
            s.add_argument("--auth-token", default=None, metavar="simple|jwt,OPTIONS",
                           help="each node's --auth-token (etcd's flag, see `verikv serve --help`; key paths "
                                "are read by every node, so give absolute ones; kept in cluster.json for restarts)")
            s.add_argument("--tls", action="store_true",
                           help="make a local CA and per-node certificates under DATA_DIR/certs and run the "
                                "nodes with client TLS (client certificates required) and mutual peer TLS")
            s.add_argument("--client-crl-file", default=None, metavar="PATH",
                           help="with --tls: each node's --client-crl-file (a PEM CRL signed by DATA_DIR/certs/ca.pem; "
                                "kept in cluster.json for restarts; '' drops it)")
            s.add_argument("--peer-crl-file", default=None, metavar="PATH",
                           help="with --tls: each node's --peer-crl-file (likewise)")
            for flag, kind, what in SERVE_FLAGS:
                s.add_argument(f"--{flag}", type=kind, default=None,
                               help=f"each node's --{flag} ({what}; see `verikv serve --help`; kept in "
                                    "cluster.json for restarts)")
        if name == "down":
            s.add_argument("--timeout-s", type=float, default=10.0)
        if name == "status":
            s.add_argument("--json", action="store_true",
                           help="as JSON (with --watch: one object per refresh, a line each)")
            s.add_argument("--watch", type=float, nargs="?", const=1.0, default=None, metavar="SECONDS",
                           help="refresh every SECONDS (default 1) until Ctrl-C: roles, committed and applied "
                                "slots, apply lag, revision, proposals/s and WAL fsync p99 per node")
            s.add_argument("--count", type=int, default=None, help="with --watch: stop after COUNT refreshes")
    return p


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return args.func(args)
    except ClusterError as err:
        print(f"verikv cluster: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"verikv cluster: {err}", file=sys.stderr)
        return 1
