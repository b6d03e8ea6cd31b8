"""The Dafny project verifies, and each mutant that breaks a safety rule makes it fail."""

import pytest

from verikv.verified_core import build, mutants


@pytest.mark.slow
def test_dafny_project_verifies():
    # The build verified already; this keeps `pytest` alone honest about the proofs too.
    build.verify()


@pytest.mark.slow
@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_mutant_breaks_the_proof(mutant):
    killed, output = mutants.run_mutant(mutant)
    assert killed, f"mutant {mutant.name} survived ({mutant.why}); verifier said:\n{output}"


def test_a_stale_mutant_is_an_error_not_a_pass(tmp_path):
    copy = tmp_path / "dafny"
    copy.mkdir()
    (copy / "Quorums.i.dfy").write_text("nothing to mutate here")
    with pytest.raises(mutants.MutantError, match="occurs 0 times"):
        mutants.apply(mutants.MUTANTS[0], copy)
