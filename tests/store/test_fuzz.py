"""Random byte damage to a crashed journal (its file or its WAL): opening either repairs it, with the 50 in-flight
intents back and a one-line diagnosis, or refuses with a one-line JournalError - never another exception (the
engine command would show it as a traceback and its supervisor would restart it in a loop)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from reference.engine.journal import Journal, JournalError

from .conftest import write_journal

IN_FLIGHT = sorted(f"s{i}" for i in range(50))

damage = st.one_of(
    st.tuples(st.just("flip"), st.sampled_from(["db", "wal"]),
              st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("cut"), st.sampled_from(["db", "wal"]), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("zero"), st.sampled_from(["db", "wal"]),
              st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 8192))),
)


def apply(db: Path, what) -> None:
    kind, which, arg = what
    path = db if which == "db" else Path(str(db) + ".wal")
    raw = bytearray(path.read_bytes())
    if kind == "flip":
        for where, xor in arg:
            raw[int(where * len(raw))] ^= xor
    elif kind == "cut":
        raw = raw[:int(arg * len(raw))]
    else:
        start = int(arg[0] * len(raw))
        raw[start:start + arg[1]] = b"\0" * len(raw[start:start + arg[1]])
    path.write_bytes(bytes(raw))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(what=damage)
def test_open_repairs_or_refuses_in_one_line(tmp_path_factory, template, what):
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(template, folder, dirs_exist_ok=True)
    db = folder / "journal-A.duckdb"
    apply(db, what)
    try:
        journal = Journal(db)
    except JournalError as exc:
        event("refused")
        assert "\n" not in str(exc) and str(exc)
        return
    event("repaired" if journal.repair else "opened as it was")
    try:
        intents = journal.in_flight()
        assert sorted(i.signal_id for i in intents) == IN_FLIGHT, journal.repair and journal.repair.line
        assert all(i.state == "SENDING" and i.comment == f"td{i.signal_id}-1" for i in intents)
        if journal.repair is not None:
            assert "\n" not in journal.repair.line and str(db) in journal.repair.line
    finally:
        journal.close()



@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    write_journal(folder / "journal-A.duckdb", after=5)   # a WAL to damage: 5 final intents after the snapshot
    return folder
