"""Real-process integration tests: a 3-node verikv cluster run by `verikv cluster up|status|down`.

Each test gets its own data dir (under pytest's tmp_path) and its own block of ports in
27000-27999; the `make_cluster` fixture always runs `cluster down` at teardown, so no node
outlives its test. Only processes the fixture's cluster started are ever signalled.
"""

import pytest

from integration_helpers import PORT_BLOCK, Cluster, ports_free


@pytest.fixture
def make_cluster(tmp_path, request):
    """make_cluster(slot) -> Cluster on ports 27000 + 20*slot (data under tmp_path); torn down after."""
    made: list[Cluster] = []

    def make(slot: int) -> Cluster:
        base = 27000 + PORT_BLOCK * slot
        assert 27000 <= base and base + 12 <= 27999
        if not ports_free(base):
            pytest.fail(f"ports {base}..{base + 12} are in use; cannot run {request.node.name}")
        c = Cluster(tmp_path / f"cluster{slot}", base)
        made.append(c)
        return c

    yield make
    for c in made:
        res = c.down()
        if res.returncode != 0:  # pragma: no cover - reported, never hidden
            print(f"cluster down of {c.data_dir} failed: {res.stdout}{res.stderr}", file=sys.stderr)


