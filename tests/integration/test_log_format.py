"""`verikv serve --log-format json`: every line the node writes to stderr is one JSON object with
zap's keys (as etcd's --logger zap), through a start, a write, a stop, and a refusal to start
(a corrupt WAL: the fatal line is JSON too)."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from integration_helpers import VERIKV, first_put

CLIENT_PORT, PEER_PORT = 28740, 28741
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")


def serve(data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{PEER_PORT}",
                                      "--client-listen", f"127.0.0.1:{CLIENT_PORT}", "--data-dir", str(data_dir),
                                      "--log-format", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def parsed(stderr: str) -> list[dict]:
    lines = stderr.splitlines()
    assert lines, "no log lines"
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, or the test fails here
        assert isinstance(entry, dict), line
        assert {"level", "ts", "logger", "caller", "msg"} <= entry.keys() or entry["level"] == "fatal", line
        assert entry["level"] in {"debug", "info", "warn", "error", "fatal"}, line
        assert TS.match(entry["ts"]), line
        entries.append(entry)
    return entries


def test_every_line_of_a_node_run_is_a_json_object(tmp_path):
    node = serve(tmp_path / "n0")
    try:
        assert first_put(node, CLIENT_PORT).header.revision == 2
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=20)
    assert node.returncode == 0, err
    entries = parsed(err)
    msgs = [e["msg"] for e in entries]
    assert any(m.startswith("node 0 serving clients on 127.0.0.1:") for m in msgs), msgs
    assert any(m.startswith("leader at ballot") for m in msgs), msgs
    assert msgs[-1] == "stopping" or "stopping" in msgs
    serving = next(e for e in entries if e["msg"].startswith("node 0 serving"))
    assert serving["level"] == "info" and serving["logger"] == "verikv.serve" and serving["caller"].startswith("serve.py:")


def test_a_refusal_to_start_is_a_json_line_too(tmp_path):
    wal = tmp_path / "n0" / "wal"
    wal.mkdir(parents=True)
    record = struct.pack("<IIB", 4, 12345, 1) + b"abcd"  # a bad CRC
    (wal / f"{0:016x}.wal").write_bytes(record * 2)
    node = serve(tmp_path / "n0")
    _, err = node.communicate(timeout=30)
    assert node.returncode == 71, err
    entries = parsed(err)
    assert entries[-1]["level"] == "fatal" and "WAL is corrupt" in entries[-1]["msg"], entries[-1]
    assert "Traceback" not in err


def test_a_bad_flag_value_is_refused(tmp_path):
    res = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", "127.0.0.1:1", "--client-listen", "127.0.0.1:2",
                                   "--data-dir", str(tmp_path), "--log-format", "yaml"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "--log-format" in res.stderr and "invalid choice" in res.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
