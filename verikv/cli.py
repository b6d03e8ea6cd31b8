"""The `verikv` command line: one entry point, one subcommand per job.

Errors end with a message on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys


def cmd_info(_args: argparse.Namespace) -> int:
    """Say what is built: the native core and what it was extracted from."""
    from verikv.verified_core import build

    ext = build.extension_path()
    if not ext.exists():
        print("the native core is not built: run ./dev build", file=sys.stderr)
        return 1
    from verikv.verified_core import core

    sources = [p.relative_to(build.REPO) for p in build.dafny_sources()]
    print(f"native core: {ext}")
    print(f"extracted by Dafny {build.DAFNY_VERSION} (C++ backend) from {len(sources)} files in dafny/:")
    for src in sources:
        print(f"  {src}")
    print(f"check: quorum_size(3) = {core.quorum_size(3)}, next_ballot((7, 2), 1) = {core.next_ballot((7, 2), 1)}")
    return 0


# Subcommands owned by a subpackage: `verikv NAME ARGS...` calls MODULE.main(ARGS) -> exit code.
DELEGATED = {
    "cluster": ("verikv.cluster.cli", "start, stop and inspect a local 3-node cluster"),
    "serve": ("verikv.shim.serve", "run one node"),
    "snapshot": ("verikv.shim.restore", "restore a snapshot (etcdctl snapshot save) into a new cluster"),
    "bench": ("verikv.cluster.bench", "benchmark verikv against etcd on this machine"),
    "jepsen": ("verikv.jepsen.cli", "fault-injection tests of verikv and etcd"),
}


def run_delegated(name: str, argv: list[str]) -> int:
    import importlib

    module_name, _ = DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"verikv {name}: not installed ({module_name} is missing)", file=sys.stderr)
        return 2
    return module.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verikv", description="verikv: a replicated key-value store "
                                     "with a Multi-Paxos core proven in Dafny, speaking etcd's v3 API")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="say what is built")
    info.set_defaults(func=cmd_info)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        try:
            return run_delegated(argv[0], argv[1:])
        except KeyboardInterrupt:
            return 130
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
