"""The harness freezes the node's code with the package layout pyproject.toml declares."""

from pathlib import Path

from verikv.jepsen.drivers import package_layout

REPO = Path(__file__).resolve().parents[2]


def test_the_frozen_layout_is_pyprojects_and_every_package_is_there():
    layout = package_layout(REPO)
    assert layout["verikv/shim"] == "shim" and layout["verikv/etcdpb"] == "verikv/etcdpb"
    assert {"verikv", "verikv/verified_core", "verikv/cluster"} <= layout.keys()
    for source in layout.values():
        assert (REPO / source / "__init__.py").is_file(), source
