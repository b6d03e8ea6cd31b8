"""Build the verified core: verify the Dafny project, translate it to C++ and compile the core
extension. `python -m verikv.build` (./dev build) runs this after the rest of verikv's build.

Verification is deterministic: its options live in dafny/dfyconfig.toml (see the README's build
section), and every proof's resource count is checked against half of the project's limit, so a
proof that grew brittle fails the build on every machine alike, not on a loaded one only.

Each step is a plain command printed before it runs. Generated C++ lands in build/dafny-cpp/
(a build product, never edited); the extension lands beside this file as _core.<abi>.so.
Nothing is rebuilt when the Dafny sources, the glue and the tool versions are unchanged.
This module must never import the extension it builds.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
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
PROOF_COSTS = OUT_DIR / "proof-costs.csv"  # the last verification's results, one row per proof
# Verified, never compiled: the composition of the Replica objects into the system's runs
# (ImplCluster) and the end-to-end contract it refines (Main). The node drives one Replica per
# process; these exist for their proofs, and nothing in the extension calls them.
PROOF_ONLY = ("ImplCluster.i.dfy", "Main.i.dfy", "Main.s.dfy")
# A proof may use at most this share of dafny/dfyconfig.toml's resource-limit: a proof near its
# limit breaks on an unrelated edit, so the build refuses it while there is still room to fix it.
COST_SHARE = 0.5
DAFNY_VERSION = "4.11.0"
CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-w"]
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


@dataclasses.dataclass(frozen=True)
class ProofCost:
    name: str        # Dafny's name for the proof, e.g. "Impl.Replica.OnAccept (correctness)"
    outcome: str     # "Passed", or Dafny's word for what went wrong
    seconds: float
    resources: int   # Z3's resource count: the same on every run of the same sources and tools


@dataclasses.dataclass(frozen=True)
class Verification:
    proofs: list[ProofCost]
    seconds: float   # the whole `dafny verify`, wall clock
    limit: int       # the project's resource-limit

    def over_budget(self) -> list[ProofCost]:
        return [p for p in self.proofs if p.resources > COST_SHARE * self.limit]

    def failed(self) -> list[ProofCost]:
        return [p for p in self.proofs if p.outcome != "Passed"]

    def costliest(self) -> list[ProofCost]:
        return sorted(self.proofs, key=lambda p: (-p.resources, p.name))


def verify_options(project_file: Path = PROJECT_FILE) -> dict:
    """The Dafny options of the project file: every `dafny verify` of it uses them."""
    with open(project_file, "rb") as f:
        return tomllib.load(f)["options"]


def resource_limit(project_file: Path = PROJECT_FILE) -> int:
    return int(verify_options(project_file)["resource-limit"])


def _seconds(duration: str) -> float:
    hours, minutes, seconds = duration.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def read_costs(path: Path, seconds: float, limit: int) -> Verification:
    with open(path, newline="") as f:
        proofs = [ProofCost(row["TestResult.DisplayName"], row["TestResult.Outcome"],
                            _seconds(row["TestResult.Duration"]), int(row["TestResult.ResourceCount"]))
                  for row in csv.DictReader(f)]
    return Verification(proofs, seconds, limit)


def verify(dafny_dir: Path = DAFNY_DIR, costs: Path = PROOF_COSTS, check: bool = True) -> Verification:
    """Run `dafny verify` over the project in dafny_dir, with the options of its dfyconfig.toml;
    return every proof's outcome and cost. Raises BuildError if verification fails, or (check)
    if a proof costs more than COST_SHARE of the resource limit."""
    costs.parent.mkdir(parents=True, exist_ok=True)
    costs.unlink(missing_ok=True)
    started = time.monotonic()
    run([find_dafny(), "verify", dafny_dir / "dfyconfig.toml", "--solver-path", find_solver(),
         "--log-format", f"csv;LogFileName={costs}"], "dafny verify")
    result = read_costs(costs, time.monotonic() - started, resource_limit(dafny_dir / "dfyconfig.toml"))
    if check:
        check_costs(result)
    return result


def check_costs(result: Verification) -> None:
    if not result.proofs:
        raise BuildError("dafny verify reported no proofs")
    if result.failed():
        raise BuildError("proofs did not verify: " + ", ".join(f"{p.name} ({p.outcome})" for p in result.failed()))
    if result.over_budget():
        raise BuildError(
            f"proofs cost more than {COST_SHARE:.0%} of the resource limit ({result.limit:,}); make them "
            "cheaper (split the proof, hide what it does not need) before they break: "
            + ", ".join(f"{p.name} {p.resources:,}" for p in result.over_budget()))


def format_costs(result: Verification, top: int = 10) -> str:
    """Every proof's cost against its limit, the `top` costliest first."""
    budget = int(COST_SHARE * result.limit)
    lines = [f"{len(result.proofs)} proofs verified in {result.seconds:.1f} s (wall clock); "
             f"resource limit {result.limit:,} per proof, budget {budget:,} ({COST_SHARE:.0%}); "
             f"total {sum(p.resources for p in result.proofs):,}",
             f"{'resources':>12}  {'of limit':>8}  {'seconds':>7}  proof"]
    for i, p in enumerate(result.costliest()):
        if i == top:
            lines.append(f"-- the other {len(result.proofs) - top} proofs --")
        lines.append(f"{p.resources:>12,}  {p.resources / result.limit:>8.1%}  {p.seconds:>7.2f}  {p.name}"
                     + ("" if p.outcome == "Passed" else f"  [{p.outcome}]"))
    return "\n".join(lines)


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
    sources = [f for f in dafny_sources() if f.name not in PROOF_ONLY]
    run([find_dafny(), "translate", "cpp", *sources, "--no-verify", "--include-runtime",
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


def recorded_verification() -> Verification | None:
    """The last verification's results, if it verified exactly the current sources and tools."""
    if not (VERIFIED_STAMP.exists() and PROOF_COSTS.exists()):
        return None
    digest, _, seconds = VERIFIED_STAMP.read_text().partition("\n")
    if digest != inputs_digest():
        return None
    return read_costs(PROOF_COSTS, float(seconds or 0), resource_limit())


def verify_and_record(check: bool = True) -> Verification:
    """verify(), and record the result for these sources if every proof is within its budget."""
    # verify() replaces the costs file: the record of earlier sources goes with it, or those
    # sources, restored after a run that failed, would be read with this run's costs
    VERIFIED_STAMP.unlink(missing_ok=True)
    # the sources as they were when the verifier read them: an edit saved during the run (minutes)
    # was not verified, and must not be recorded as if it had been
    digest = inputs_digest()
    result = verify(check=check)
    if not result.over_budget():
        VERIFIED_STAMP.write_text(f"{digest}\n{result.seconds:.1f}\n")
    return result


def ensure_verified(check: bool = True) -> Verification:
    """The current sources' verification: the recorded one if these sources verified before,
    else run now."""
    result = recorded_verification() or verify_and_record(check)
    if check:
        check_costs(result)
    return result


def build(*, verify_proofs: bool, force: bool, reverify: bool = False) -> Path:
    """Verify (unless told not to, or the same sources verified before), translate and compile
    the core extension, skipping what is up to date."""
    digest = inputs_digest()
    target = extension_path()
    if verify_proofs:
        if reverify or force or recorded_verification() is None:
            result = verify_and_record()
            top = result.costliest()[0]
            print(f"verified {len(result.proofs)} proofs in {result.seconds:.1f} s; the costliest, {top.name}, "
                  f"used {top.resources / result.limit:.0%} of the resource limit "
                  "(python -m verikv.build --proof-costs lists them all)", flush=True)
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
