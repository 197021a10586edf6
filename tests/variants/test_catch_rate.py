"""Verification power, measured (issue 16, part 4): every broken engine of ``tests.variants.engines`` against the
stateful test (its symptom, its shrunk schedule, and whether ``tradedrill replay`` reproduces it), and, for a
variant the stateful test misses, the library's engine drills (engine-kill, engine-pause, broker-lost-reply). The
catch rate goes to ``out/verification/catch_rate.json`` and the report section (``reports/verification.py``).

Slow (about 2 minutes a variant): runs only with ``TRADEDRILL_VARIANT_SWEEP=1`` (``nox -s variants``); one variant
with ``TRADEDRILL_VARIANTS=name,name``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from scenarios import registry
from scenarios.checkers import check_run
from scenarios.runner import DrillOptions, run_once
from scenarios.stateful import ALL_CHECKERS, StatefulSession, replay, run_search
from tests.stateful.conftest import DATABASE, REPO, variant_options
from tests.variants.engines import BUGS, VARIANTS

SWEEP = bool(os.environ.get("TRADEDRILL_VARIANT_SWEEP"))
CHOSEN = [v for v in os.environ.get("TRADEDRILL_VARIANTS", "").split(",") if v] or list(VARIANTS)
SUBNET = os.environ.get("TRADEDRILL_VARIANT_SUBNET", "127.0.96")
OUT = Path(os.environ.get("TRADEDRILL_VERIFICATION_OUT", REPO / "out" / "verification"))
SHRINK_BUDGET_S = 45      # Hypothesis's own bound is 300 s a search; a sweep of 13 variants needs less
LIBRARY = ("engine-kill", "engine-pause", "lost-reply")
SAFETY = ("duplicates", "lost_signals", "state", "one_active", "results_delivered", "stale_writes")

pytestmark = [pytest.mark.drill, pytest.mark.timeout(4 * 3600),
              pytest.mark.skipif(not SWEEP, reason="the variant sweep is slow; TRADEDRILL_VARIANT_SWEEP=1 "
                                                   "(nox -s variants) runs it")]


def _library_catch(variant: str, out: Path) -> dict | None:
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    for name in LIBRARY:
        opts = DrillOptions(subnet=SUBNET, seed=7, repeat=1, out_dir=out, duration_s=12.0, settle_s=8.0,
                            rate_per_s=10.0, fault_at_s=4.0, engine_env={"PYTHONPATH": pythonpath},
                            engine_command=(sys.executable, "-m", "tests.variants.engines", variant))
        run = run_once(registry.get(name), out / name, 7, opts, repeat=1)
        failed = [r for r in check_run(run).results if r.checker in SAFETY and r.valid is False]
        if failed:
            return {"scenario": name, "run_dir": str(run.path),
                    "symptoms": [{"checker": r.checker, "summary": r.summary} for r in failed]}
    return None


def _write(rows: list[dict]) -> dict:
    from reports.verification import write_section

    caught = [r for r in rows if r["caught_by"]]
    doc = {"variants": rows, "caught": len(caught), "total": len(rows),
           "catch_rate": len(caught) / len(rows) if rows else None}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "catch_rate.json").write_text(json.dumps(doc, indent=2, default=str))
    write_section(OUT)
    return doc


def test_the_library_and_the_stateful_test_catch_the_broken_engines(tmp_path_factory, record_property):
    from hypothesis.internal.conjecture import engine as conjecture

    conjecture.MAX_SHRINKING_SECONDS = SHRINK_BUDGET_S
    root = tmp_path_factory.mktemp("variants")
    rows = []
    for variant in CHOSEN:
        started = time.monotonic()
        row = {"variant": variant, "bug": BUGS[variant], "caught_by": None}
        with StatefulSession(variant_options(variant, root / variant, subnet=SUBNET, judged=ALL_CHECKERS)) as s:
            verdict = run_search(s, "dev", DATABASE / "variants" / variant, max_examples=6)
            row["examples"] = len(s.examples)
        if verdict is not None:
            steps = [{k: v for k, v in st.items() if k != "note"} for st in verdict.steps]
            row.update(caught_by="stateful", run_dir=str(verdict.run_dir), symptoms=verdict.symptoms,
                       shrunk_steps=len(steps), schedule=steps)
            rep = replay(verdict.run_dir, subnet=SUBNET, out_dir=verdict.run_dir / "replay-1")
            row["replay"] = {"reproduced": rep.reproduced, "found": [s["checker"] for s in rep.replay.symptoms]}
        else:
            lib = _library_catch(variant, root / variant / "library")
            if lib is not None:
                row.update(caught_by=f"library:{lib['scenario']}", run_dir=lib["run_dir"], symptoms=lib["symptoms"])
        row["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        record_property(f"variant_{variant}", row["caught_by"] or "missed")
        doc = _write(rows)   # after every variant: an interrupted sweep keeps what it measured
    caught = [r for r in rows if r["caught_by"]]
    record_property("catch_rate", doc["catch_rate"])
    missed = [r["variant"] for r in rows if not r["caught_by"]]
    assert doc["catch_rate"] >= 0.95, f"caught {len(caught)} of {len(rows)}; missed {missed}"
    not_replayed = [r["variant"] for r in rows if r.get("replay") and not r["replay"]["reproduced"]]
    assert not not_replayed, f"tradedrill replay did not reproduce {not_replayed}"
