"""Shared fixtures for the jepsen tests: a real 3-member etcd cluster (one per module)."""

import shutil
import tempfile
from pathlib import Path

import pytest

from verikv.jepsen.drivers.etcd import EtcdDriver


@pytest.fixture(scope="module")
def etcd_cluster():
    data_dir = Path(tempfile.mkdtemp(prefix="verikv-jepsen-test-"))
    driver = EtcdDriver()
    driver.start(data_dir)
    try:
        yield driver
    finally:
        driver.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
