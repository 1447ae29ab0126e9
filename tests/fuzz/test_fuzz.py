"""The fuzz targets in CI: replay every corpus input, then a short deterministic search per target.

The long, coverage-guided runs use atheris (``python tests/fuzz/run.py TARGET``,
see docs/fuzzing.md); what they find that adds coverage is merged into
``tests/fuzz/corpus/TARGET`` and replayed here on every run. The search below
is hypothesis with a fixed seed and a fixed number of examples: scripts made of
random bytes and of corpus records with a few bytes changed, so CI exercises
more than the corpus without depending on luck or on atheris being installed.

Open findings (reproducers in ``tests/fuzz/findings/TARGET/``) are listed in
:data:`OPEN_FINDINGS` and expected to fail; once the parser is fixed the strict
xfail turns red: move the file into the corpus and drop its entry.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import targets
from tests.fuzz.script import Record, build, records
from tests.fuzz.targets import Target, all_targets

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
FINDINGS = HERE / "findings"
TARGETS = all_targets()

#: Examples per target in the bounded search (the whole module stays well under a minute).
EXAMPLES = 300

#: Reproducers of crashes not fixed yet: path under findings/ -> why it fails. The harnesses step around
#: these while ``tests.fuzz.targets.SUPPRESSED`` names them; this test replays them with nothing suppressed.
OPEN_FINDINGS: dict[str, str] = {
}


@pytest.fixture(autouse=True)
def _collect_garbage_first() -> None:
    # An unhandled failed Deferred is logged when it is garbage-collected; one left by an earlier test must not
    # be collected (and blamed on a target by FailureWatch) in the middle of these tests.
    gc.collect()


def _corpus(name: str) -> list[Path]:
    directory = CORPUS / name
    return sorted(directory.iterdir()) if directory.is_dir() else []


def test_every_target_has_a_corpus() -> None:
    missing = [name for name in TARGETS if not _corpus(name)]
    assert not missing, f"no corpus for {missing}: python tests/fuzz/run.py TARGET --seed"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_replays_without_findings(name: str) -> None:
    harness = TARGETS[name].harness
    for path in _corpus(name):
        try:
            harness(path.read_bytes())
        except BaseException as e:
            raise AssertionError(f"{path.relative_to(HERE)}: {type(e).__name__}: {e}") from e


def _fragments(target: Target) -> list[Record]:
    """Records of the target's corpus: material the search mutates."""
    out: list[Record] = []
    for path in _corpus(target.name):
        out += list(records(path.read_bytes()))[:16]
    return out[:400] or [(0, b"")]


def _mutated(fragments: list[Record]) -> st.SearchStrategy[Record]:
    def mutate(record: Record, flips: list[tuple[int, int]], cut: int) -> Record:
        op, payload = record
        data = bytearray(payload)
        for position, value in flips:
            if data:
                data[position % len(data)] = value
        if cut and data:
            del data[cut % len(data):]
        return op, bytes(data)

    flip = st.tuples(st.integers(0, 1 << 16), st.integers(0, 255))
    return st.builds(mutate, st.sampled_from(fragments), st.lists(flip, max_size=3), st.integers(0, 1 << 16))


def _scripts(target: Target) -> st.SearchStrategy[bytes]:
    fragments = _fragments(target)
    ops = st.one_of(st.sampled_from(sorted({op for op, _ in fragments})), st.integers(0, 255))
    fresh = st.tuples(ops, st.binary(max_size=96))
    record = st.one_of(st.sampled_from(fragments), _mutated(fragments), fresh)
    prefix = st.binary(max_size=2)  # targets that read a leading byte (a mode) before the records
    return st.builds(lambda p, rs: p + build(rs), prefix, st.lists(record, max_size=12))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_bounded_search_finds_nothing(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(_scripts(target))
    def search(data: bytes) -> None:
        target.harness(data)

    search()


def _open_findings() -> list[object]:
    params: list[object] = []
    for key, reason in sorted(OPEN_FINDINGS.items()):
        params.append(pytest.param(key, marks=pytest.mark.xfail(strict=True, reason=reason), id=key))
    return params


def test_open_findings_have_reproducers() -> None:
    on_disk = {f"{p.parent.name}/{p.name}" for p in FINDINGS.glob("*/*")} if FINDINGS.is_dir() else set()
    assert on_disk == set(OPEN_FINDINGS), "tests/fuzz/findings/ and OPEN_FINDINGS disagree"


@pytest.mark.parametrize("key", _open_findings())
def test_open_finding_still_reproduces(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "SUPPRESSED", set())
    name = key.split("/", 1)[0]
    TARGETS[name].harness((FINDINGS / key).read_bytes())
