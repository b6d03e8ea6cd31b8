"""The harness freezes verikv's code with the package layout pyproject.toml declares."""

from pathlib import Path

from verikv.jepsen.drivers.frozen_code import code_files, fingerprint, freeze, package_layout

REPO = Path(__file__).resolve().parents[2]


def test_the_frozen_layout_is_pyprojects_and_every_package_is_there():
    layout = package_layout(REPO)
    assert layout["verikv/shim"] == "shim" and layout["verikv/etcdpb"] == "verikv/etcdpb"
    assert {"verikv", "verikv/verified_core", "verikv/cluster"} <= layout.keys()
    for source in layout.values():
        assert (REPO / source / "__init__.py").is_file(), source


def test_the_frozen_code_is_every_module_of_every_package_and_its_hash_sees_each(tmp_path):
    files = dict(code_files(REPO))
    # subpackages too: a node runs verikv/shim/node/machine.py as much as verikv/shim/serve.py
    assert {"verikv/cli.py", "verikv/shim/serve.py", "verikv/shim/node/machine.py",
            "verikv/shim/io/wal.py", "verikv/jepsen/drivers/base.py"} <= files.keys()
    frozen = freeze(tmp_path / "code", REPO)
    for target, source in files.items():
        assert (frozen / target).read_bytes() == source.read_bytes(), target
    copy = tmp_path / "tree"
    for target, source in files.items():  # a source tree of its own, then one file edited
        dest = copy / package_layout(REPO)[target.rsplit("/", 1)[0]] / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
    (copy / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    before = fingerprint(copy)
    assert before == fingerprint(REPO)
    machine = copy / "shim" / "node" / "machine.py"
    machine.write_bytes(machine.read_bytes() + b"\n# edited\n")
    assert fingerprint(copy) != before
