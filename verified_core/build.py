"""Build verikv: gRPC stubs, the grpc++ modules (client front, bench load generator), then verify
the Dafny project, translate it to C++ and compile the core extension.

Usage: python -m verikv.verified_core.build [--verify|--no-verify] [--force]

Each step is a plain command printed before it runs. Generated C++ lands in build/dafny-cpp/
(a build product, never edited); the extension lands beside this file as _core.<abi>.so.
Nothing is rebuilt when the Dafny sources, the glue and the tool versions are unchanged.
This module must never import the extension it builds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
DAFNY_DIR = REPO / "dafny"
PROJECT_FILE = DAFNY_DIR / "dfyconfig.toml"
GLUE = PACKAGE_DIR / "glue" / "core_module.cpp"
OUT_DIR = REPO / "build" / "dafny-cpp"
GENERATED = OUT_DIR / "verikv_core.cpp"
STAMP = OUT_DIR / "build.stamp"
VERIFIED_STAMP = OUT_DIR / "verified.stamp"
DAFNY_VERSION = "4.11.0"
CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-w"]
# Native helpers that are not part of the verified core: (source, package dir, module name).
GRPC_MODULES = [
    (REPO / "shim" / "front" / "front.cpp", REPO / "shim", "_front"),            # the client API
    (REPO / "cluster" / "loadgen" / "loadgen.cpp", REPO / "cluster", "_loadgen"),  # `verikv bench`
]

class BuildError(Exception):
    """A build step failed; the message says which and why."""


def extension_path() -> Path:
    return PACKAGE_DIR / ("_core" + sysconfig.get_config_var("EXT_SUFFIX"))


def find_dafny() -> Path:
    candidates = [os.environ.get("VERIKV_DAFNY"), REPO / ".tools" / "dafny", shutil.which("dafny")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise BuildError(
        f"Dafny {DAFNY_VERSION} not found: run ./dev setup, or set VERIKV_DAFNY to the dafny executable"
    )


def find_solver() -> Path:
    solver = os.environ.get("VERIKV_Z3") or shutil.which("z3")
    if not solver:
        raise BuildError("Z3 not found: install Debian's z3 (./dev setup does), or set VERIKV_Z3")
    return Path(solver)


def dafny_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DOTNET_ROLL_FORWARD", "Major")  # the NuGet tool targets net8.0
    env.setdefault("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
    env.setdefault("DOTNET_NOLOGO", "1")
    return env


def run(cmd: list[str], what: str) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], env=dafny_env())
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode})")


def dafny_sources(dafny_dir: Path = DAFNY_DIR) -> list[Path]:
    return sorted(p for p in dafny_dir.rglob("*.dfy") if "mutants" not in p.parts and "wip" not in p.parts)


def verify(dafny_dir: Path = DAFNY_DIR) -> float:
    """Run `dafny verify` over the project in dafny_dir; return the seconds it took."""
    started = time.monotonic()
    run([find_dafny(), "verify", dafny_dir / "dfyconfig.toml", "--solver-path", find_solver()],
        "dafny verify")
    return time.monotonic() - started


def inputs_digest() -> str:
    h = hashlib.sha256()
    for path in dafny_sources() + [PROJECT_FILE, GLUE, Path(__file__)]:
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    h.update(DAFNY_VERSION.encode())
    h.update(sys.version.encode())
    return h.hexdigest()


def translate() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    run([find_dafny(), "translate", "cpp", PROJECT_FILE, "--no-verify", "--include-runtime",
         "--unicode-char", "false", "--solver-path", find_solver(), "-o", GENERATED],
        "dafny translate cpp")


def compile_extension() -> Path:
    import pybind11  # Debian: python3-pybind11

    target = extension_path()
    tmp = target.with_suffix(".tmp")
    cmd = ["g++", *CXXFLAGS, f"-I{OUT_DIR}", f"-I{pybind11.get_include()}",
           f"-I{sysconfig.get_paths()['include']}", GLUE, "-o", tmp]
    run(cmd, "compiling the extension")
    os.replace(tmp, target)  # an importer never sees a half-written module
    return target


def compile_grpc_modules(force: bool = False) -> None:
    """The grpc++ modules (GRPC_MODULES), against Debian's libgrpc++-dev; each is rebuilt only
    when its source or the Python version changed."""
    import pybind11

    grpc_flags = None
    for source, package_dir, name in GRPC_MODULES:
        digest = hashlib.sha256(source.read_bytes() + sys.version.encode()).hexdigest()
        target = package_dir / (name + sysconfig.get_config_var("EXT_SUFFIX"))
        stamp = OUT_DIR / f"{name}.stamp"
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
        run(["g++", *CXXFLAGS, f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}",
             source, "-o", tmp, *grpc_flags], f"compiling {source.relative_to(REPO)}")
        os.replace(tmp, target)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
        print(f"built {target.relative_to(REPO)}", flush=True)


PROTO_DIR = REPO / "proto"


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


def build(*, verify_proofs: bool, force: bool, reverify: bool = False) -> Path:
    generate_stubs(force)
    compile_grpc_modules(force)
    digest = inputs_digest()
    target = extension_path()
    if verify_proofs:
        if reverify or force or not VERIFIED_STAMP.exists() or VERIFIED_STAMP.read_text() != digest:
            seconds = verify()
            print(f"verified the Dafny project in {seconds:.1f} s", flush=True)
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            VERIFIED_STAMP.write_text(digest)
        else:
            print("proofs unchanged since they last verified", flush=True)
    if not force and target.exists() and STAMP.exists() and STAMP.read_text() == digest:
        print(f"up to date: {target.relative_to(REPO)}", flush=True)
        return target
    translate()
    target = compile_extension()
    STAMP.write_text(digest)
    print(f"built {target.relative_to(REPO)} from {GENERATED.relative_to(REPO)}", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verikv.verified_core.build", description=__doc__.splitlines()[0])
    parser.add_argument("--verify", dest="verify", action="store_true", default=True,
                        help="verify the proofs first (default)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip `dafny verify` (translation alone does not check proofs)")
    parser.add_argument("--reverify", action="store_true",
                        help="verify even if the sources verified before unchanged")
    parser.add_argument("--force", action="store_true",
                        help="verify, translate and compile even if up to date")
    args = parser.parse_args(argv)
    try:
        build(verify_proofs=args.verify, force=args.force, reverify=args.reverify)
    except BuildError as err:
        print(f"build failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
