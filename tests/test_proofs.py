"""The Dafny project verifies, and each mutant that breaks a safety rule makes it fail."""

import re

import pytest

from verikv.verified_core import build, mutants


@pytest.mark.slow
def test_dafny_project_verifies():
    # `./dev test` verified these sources in its build step and recorded every proof's result;
    # pytest alone (or after an edit) verifies them here. Either way each proof must have passed
    # within its budget.
    result = build.ensure_verified()
    assert result.proofs and not result.failed() and not result.over_budget()
    assert any(p.name.startswith("ImplHandlers.Replica.OnAccept ") for p in result.proofs)


def test_a_proof_over_its_budget_fails_the_build(tmp_path):
    costs = tmp_path / "costs.csv"
    costs.write_text("TestResult.DisplayName,TestResult.Outcome,TestResult.Duration,TestResult.ResourceCount,RandomSeed\n"
                     "A.Cheap (correctness),Passed,00:00:00.5000000,100,0\n"
                     "A.Brittle (correctness),Passed,00:00:01.2500000,600,0\n")
    result = build.read_costs(costs, seconds=2.0, limit=1000)
    assert [p.name for p in result.costliest()] == ["A.Brittle (correctness)", "A.Cheap (correctness)"]
    assert result.costliest()[0].seconds == 1.25
    with pytest.raises(build.BuildError, match="A.Brittle.*600"):
        build.check_costs(result)
    table = build.format_costs(result)
    assert "60.0%" in table and "A.Brittle" in table.splitlines()[2]


def test_a_failed_verification_leaves_no_record_of_earlier_sources(tmp_path, monkeypatch):
    # Sources that verified, then an edit whose run failed (it replaced the costs file), then the
    # edit undone: the record must not pass the failed run's costs off as the restored sources'.
    stamp, costs = tmp_path / "verified.stamp", tmp_path / "costs.csv"
    monkeypatch.setattr(build, "VERIFIED_STAMP", stamp)
    monkeypatch.setattr(build, "PROOF_COSTS", costs)
    monkeypatch.setattr(build, "inputs_digest", lambda: "sources-a")
    stamp.write_text("sources-a\n2.0\n")
    costs.write_text("TestResult.DisplayName,TestResult.Outcome,TestResult.Duration,TestResult.ResourceCount,RandomSeed\n"
                     "A.Fine (correctness),Passed,00:00:00.5000000,100,0\n")
    assert build.recorded_verification() is not None

    def failing_run(check=True):
        costs.write_text("TestResult.DisplayName,TestResult.Outcome,TestResult.Duration,TestResult.ResourceCount,RandomSeed\n"
                         "A.Fine (correctness),Passed,00:00:00.5000000,900,0\n")
        raise build.BuildError("proofs cost more than 50% of the resource limit")
    monkeypatch.setattr(build, "verify", failing_run)
    with pytest.raises(build.BuildError):
        build.verify_and_record()
    assert build.recorded_verification() is None


def test_an_edit_saved_during_verification_is_not_recorded_as_verified(tmp_path, monkeypatch):
    # The verifier reads the sources when it starts; an edit saved while it runs (minutes) was not
    # verified: the record is of the sources it read, so the edited ones verify again next time.
    stamp, costs = tmp_path / "verified.stamp", tmp_path / "costs.csv"
    monkeypatch.setattr(build, "VERIFIED_STAMP", stamp)
    monkeypatch.setattr(build, "PROOF_COSTS", costs)
    sources = ["sources-a"]
    monkeypatch.setattr(build, "inputs_digest", lambda: sources[0])

    def run_during_which_a_file_is_saved(check=True):
        costs.write_text("TestResult.DisplayName,TestResult.Outcome,TestResult.Duration,TestResult.ResourceCount,RandomSeed\n"
                         "A.Fine (correctness),Passed,00:00:00.5000000,100,0\n")
        sources[0] = "sources-b"
        return build.read_costs(costs, seconds=2.0, limit=1000)
    monkeypatch.setattr(build, "verify", run_during_which_a_file_is_saved)
    build.verify_and_record()
    assert stamp.read_text().startswith("sources-a\n")
    assert build.recorded_verification() is None  # the current sources, b, never verified
    sources[0] = "sources-a"  # the edit undone: the record is a's
    assert build.recorded_verification() is not None


def test_the_project_keeps_verification_deterministic():
    # Each of these is part of why a verification's outcome does not depend on the machine's
    # speed or load (README, build pipeline); dropping one brings the flaky failures back.
    options = build.verify_options()
    assert options["resource-limit"] > 0
    assert options["boogie"] == ["/normalizeDeclarationOrder:0"]


@pytest.mark.slow
@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_mutant_breaks_the_proof(mutant):
    killed, output = mutants.run_mutant(mutant)
    assert killed, f"mutant {mutant.name} survived ({mutant.why}); verifier said:\n{output}"


def test_every_mutant_finds_its_text_once():
    # Checked without verifying (the mutants themselves run for minutes, late in the suite): an
    # edit of the Dafny sources that a mutant's text no longer matches shows here at once.
    for mutant in mutants.MUTANTS:
        count = (build.DAFNY_DIR / mutant.file).read_text().count(mutant.original)
        assert count == 1, f"mutant {mutant.name}: its text occurs {count} times in {mutant.file}"


def test_a_stale_mutant_is_an_error_not_a_pass(tmp_path):
    copy = tmp_path / "dafny"
    copy.mkdir()
    (copy / "Quorums.s.dfy").write_text("nothing to mutate here")
    with pytest.raises(mutants.MutantError, match="occurs 0 times"):
        mutants.apply(mutants.MUTANTS[0], copy)


def _modules(dafny_dir):
    """{module name: file name} and {file name: [imported module names]} of the project."""
    defined, imported = {}, {}
    for f in sorted(dafny_dir.glob("*.dfy")):
        text = f.read_text()
        for name in re.findall(r"^(?:abstract\s+)?module\s+(\w+)", text, re.M):
            defined[name] = f.name
        imported[f.name] = re.findall(r"^\s*import\s+(?:opened\s+)?(?:\w+\s*=\s*)?(\w+)", text, re.M)
    return defined, imported


def _trust_violations(dafny_dir):
    defined, imported = _modules(dafny_dir)
    return [f"{f} imports {m} ({defined.get(m, 'undefined')})"
            for f, mods in imported.items() if f.endswith(".s.dfy")
            for m in mods if not defined.get(m, "").endswith(".s.dfy")]


def test_the_specification_imports_only_specification():
    # What a reader must trust (dafny/TRUSTED.md, "What to read") is closed under imports: a
    # `.s.dfy` file that imported a `.i.dfy` one would put proof code in the trusted base.
    dafny_dir = build.DAFNY_DIR
    assert _trust_violations(dafny_dir) == []
    listed = (dafny_dir / "TRUSTED.md").read_text()
    for f in sorted(dafny_dir.glob("*.s.dfy")):
        lines = len(f.read_text().splitlines())
        assert f"| `{f.name}` | {lines} |" in listed, f"TRUSTED.md's reading list misses {f.name} ({lines} lines)"


def test_a_specification_importing_a_proof_is_found(tmp_path):
    (tmp_path / "A.s.dfy").write_text("module A {\n  import B\n}\n")
    (tmp_path / "B.i.dfy").write_text("module B {\n}\n")
    assert _trust_violations(tmp_path) == ["A.s.dfy imports B (B.i.dfy)"]
