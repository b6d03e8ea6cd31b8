"""Build verikv from a source checkout: the gRPC stubs of etcd's API (proto/ into verikv/etcdpb/),
the grpc++ modules (the client front in shim/api/, the load generator of `verikv bench` in
cluster/), then the verified core (verified_core/build.py: verify the Dafny project, translate it
to C++, compile the extension).

Usage: python -m verikv.build [--verify|--no-verify] [--reverify] [--force]
       python -m verikv.build --proof-costs

Each step is a plain command printed before it runs, and is skipped when its inputs did not
change. This module must never import what it builds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from verikv.verified_core import build as core_build
from verikv.verified_core.build import BuildError

REPO = core_build.REPO
STAMPS = REPO / "build"
PROTO_DIR = REPO / "proto"
CXXFLAGS = core_build.CXXFLAGS
# The grpc++ modules: (source, package dir, module name). They are not part of the verified core.
GRPC_MODULES = [
    (REPO / "shim" / "api" / "front" / "front.cpp", REPO / "shim" / "api", "_front"),  # the client API
    (REPO / "cluster" / "loadgen" / "loadgen.cpp", REPO / "cluster", "_loadgen"),  # `verikv bench`
]


def generate_stubs(force: bool = False) -> None:
    """gRPC stubs for the etcd API from proto/ into verikv/etcdpb/ (skipped when current)."""
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    outputs = [REPO / p.relative_to(PROTO_DIR).with_name(p.stem + "_pb2.py") for p in protos]
    newest_input = max(p.stat().st_mtime for p in protos + [Path(__file__)])
    if not force and all(o.exists() and o.stat().st_mtime >= newest_input for o in outputs):
        return
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={REPO}",
           f"--grpc_python_out={REPO}", *[str(p.relative_to(PROTO_DIR)) for p in protos]]
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=PROTO_DIR)
    if result.returncode != 0:
        raise BuildError(f"generating gRPC stubs failed (exit {result.returncode})")


def compile_grpc_modules(force: bool = False) -> None:
    """The grpc++ modules (GRPC_MODULES), against Debian's libgrpc++-dev; each is rebuilt only
    when its source, a header beside it or the Python version changed."""
    import pybind11  # Debian: python3-pybind11

    grpc_flags = None
    for source, package_dir, name in GRPC_MODULES:
        headers = b"".join(h.read_bytes() for h in sorted(source.parent.glob("*.h")))
        digest = hashlib.sha256(source.read_bytes() + headers + sys.version.encode()).hexdigest()
        target = package_dir / (name + sysconfig.get_config_var("EXT_SUFFIX"))
        stamp = STAMPS / f"{name}.stamp"
        if not force and target.exists() and stamp.exists() and stamp.read_text() == digest:
            continue
        if grpc_flags is None:
            try:
                grpc_flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++"], capture_output=True,
                                            text=True, check=True).stdout.split()
            except (OSError, subprocess.CalledProcessError):
                raise BuildError("grpc++ not found: install Debian's libgrpc++-dev and pkg-config "
                                 "(./dev setup does)") from None
        tmp = target.with_suffix(".tmp")
        core_build.run(["g++", *CXXFLAGS, f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}",
                        source, "-o", tmp, *grpc_flags], f"compiling {source.relative_to(REPO)}")
        os.replace(tmp, target)  # an importer never sees a half-written module
        STAMPS.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
        print(f"built {target.relative_to(REPO)}", flush=True)


def build(*, verify_proofs: bool, force: bool, reverify: bool = False) -> None:
    generate_stubs(force)
    compile_grpc_modules(force)
    core_build.build(verify_proofs=verify_proofs, force=force, reverify=reverify)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verikv.build", description=__doc__.splitlines()[0])
    parser.add_argument("--verify", dest="verify", action="store_true", default=True,
                        help="verify the proofs first (default)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip `dafny verify` (translation alone does not check proofs)")
    parser.add_argument("--reverify", action="store_true",
                        help="verify even if the sources verified before unchanged")
    parser.add_argument("--force", action="store_true",
                        help="verify, translate and compile even if up to date")
    parser.add_argument("--proof-costs", action="store_true",
                        help="print every proof's resource count against its limit, the 10 costliest "
                             "first (verifies first unless the sources verified before unchanged)")
    args = parser.parse_args(argv)
    try:
        if args.proof_costs:
            result = core_build.ensure_verified(check=False)
            print(core_build.format_costs(result))
            core_build.check_costs(result)
            return 0
        build(verify_proofs=args.verify, force=args.force, reverify=args.reverify)
    except BuildError as err:
        print(f"build failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
