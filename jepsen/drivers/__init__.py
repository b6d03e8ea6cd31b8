"""System drivers: start a 3-node cluster of etcd or verikv and do things to its processes.

One small interface (base.SystemDriver) so workloads, nemeses and the checker do not care which
system runs: base.py (the interface and what all systems share), etcd.py, verikv.py, and
frozen_code.py (the copy of verikv's code a run uses).
"""

from __future__ import annotations

from verikv.jepsen.drivers.base import DriverUnavailable, SystemDriver
from verikv.jepsen.drivers.etcd import EtcdDriver
from verikv.jepsen.drivers.verikv import VerikvDriver

DRIVERS = {"etcd": EtcdDriver, "verikv": VerikvDriver}


def make_driver(system: str) -> SystemDriver:
    if system not in DRIVERS:
        raise DriverUnavailable(f"unknown system {system!r} (choose from {', '.join(DRIVERS)})")
    return DRIVERS[system]()
