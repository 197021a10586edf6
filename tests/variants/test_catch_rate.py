"""Verification power, measured (issue 16, part 4): every broken engine of ``tests.variants.engines`` against the
stateful test (its symptom, its shrunk schedule, and whether ``tradedrill replay`` reproduces it), and, for a
variant the stateful test misses, the library's drills of ``LIBRARY`` (each with the reference engine as its
control: a checker the reference fails too does not count). The catch rate goes to
``out/verification/catch_rate.json`` and the report section (``reports/verification.py``).

Bounded per variant: the search (profile ``sweep``) starts no example after ``SEARCH_BUDGET_S``; the failure is
minimised by replaying its schedule with steps dropped (``scenarios.stateful.minimise``: at most ``MINIMISE_TRIALS``
replays and ``MINIMISE_BUDGET_S`` s; Hypothesis does not shrink); then one ``replay`` on a fresh stack. Runs only
with ``TRADEDRILL_VARIANT_SWEEP=1`` (``nox -s variants``); some variants with ``TRADEDRILL_VARIANTS=name,name``: their
rows replace the same variants' rows of an existing catch_rate.json, so a sweep can run in pieces.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from scenarios import registry
from scenarios.checkers import RunView, check_run
from scenarios.runner import DrillOptions, run_once
from scenarios.stateful import ALL_CHECKERS, PROFILES, StatefulSession, replay_attempts, run_search
from tests.stateful.conftest import DATABASE, REPO, variant_options
from tests.variants.engines import BUGS, SIGNAL_OF, VARIANTS
from tradedrill.process import StackIndex, SubnetBusy

SWEEP = bool(os.environ.get("TRADEDRILL_VARIANT_SWEEP"))
CHOSEN = [v.strip() for v in os.environ.get("TRADEDRILL_VARIANTS", "").split(",") if v.strip()] or list(VARIANTS)
SUBNET = os.environ.get("TRADEDRILL_VARIANT_SUBNET", "127.0.96")
OUT = Path(os.environ.get("TRADEDRILL_VERIFICATION_OUT", REPO / "out" / "verification"))

from tests.variants.conftest import search_budget_s  # noqa: E402 - validated at configure time (one line, exit 4)

SEARCH_BUDGET_S = search_budget_s() if SWEEP else 300.0   # no example starts after it (unread when skipped)
MINIMISE_TRIALS = 8
MINIMISE_BUDGET_S = 120.0
TARGET_STEPS = 5          # the aim for a shrunk schedule
REPLAY_ATTEMPTS = 3       # fresh stacks a catch gets to reproduce on, and the reference control runs on
# the scenario library's drills a variant the stateful test missed is run through, in order, until one catches it:
# (scenario, DrillOptions changes, engine overrides). The short engine drills as tests/drills runs them; a pause of
# the active engine with an order in flight at a slow broker (a takeover that must find that order); then
# redis-restart-in-flight with fast reconnects (as tests/drills/test_fencing.py runs it: with the documents' timings
# the engine loses its lease in the outage and never flushes), and broker-primary-down at its own length (a primary
# outage longer than BRK-2's 20 s switch bound)
SHORT = {"duration_s": 12.0, "settle_s": 8.0, "rate_per_s": 10.0, "fault_at_s": 4.0}
LIBRARY: tuple[tuple[str, dict, dict], ...] = (
    ("engine-kill", SHORT, {}), ("engine-pause", SHORT, {}), ("lost-reply", SHORT, {}),
    ("engine-pause-in-flight", {}, {}), ("requote-storm", {}, {}),
    ("redis-restart-in-flight", {"duration_s": 14.0, "settle_s": 10.0},
     {"redis_retry_interval_s": 0.2, "heartbeat_s": 0.5}),
    ("broker-primary-down", {}, {}),
)
SAFETY = ("duplicates", "lost_signals", "state", "one_active", "results_delivered", "stale_writes")
LIVENESS = ("broker_fallback",)   # BRK-2: a library catch by a liveness checker is counted when the control passes it

pytestmark = [pytest.mark.drill, pytest.mark.timeout(4 * 3600),
              pytest.mark.skipif(not SWEEP, reason="the variant sweep is slow; TRADEDRILL_VARIANT_SWEEP=1 "
                                                   "(nox -s variants) runs it")]


def _library_run(variant: str | None, name: str, changes: dict, overrides: dict, out: Path):
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    opts = DrillOptions(subnet=SUBNET, seed=7, repeat=1, out_dir=out, engine_env={"PYTHONPATH": pythonpath},
                        engine_overrides=dict(overrides), **changes,
                        engine_command=(sys.executable, "-m", "tests.variants.engines", variant) if variant else None)
    run = run_once(registry.get(name), out / name, 7, opts, repeat=1)
    signal_of = None
    if variant in SIGNAL_OF:   # the variant's own comments (as the stateful test reads them)
        ids = [s.id for s in RunView(run).signals()]
        signal_of = variant_options(variant, out).signal_of_for(ids)
    return run, [r for r in check_run(run, signal_of=signal_of).results
                 if r.checker in SAFETY + LIVENESS and r.valid is False]


def _library_catch(variant: str, out: Path) -> dict | None:
    """The first library drill whose safety or liveness checkers fail on ``variant`` while the reference engine,
    run as the control on the same drill, seed and settings, passes those checkers."""
    for name, changes, overrides in LIBRARY:
        run, failed = _library_run(variant, name, changes, overrides, out)
        if not failed:
            continue
        control, control_failed = _library_run(None, name, changes, overrides, out / "control")
        also = {r.checker for r in control_failed}
        mine = [r for r in failed if r.checker not in also]
        if mine:
            return {"scenario": name, "run_dir": str(run.path),
                    "settings": {**changes, **({"engine_overrides": overrides} if overrides else {})},
                    "symptoms": [{"checker": r.checker, "summary": r.summary} for r in mine],
                    "control": {"run_dir": str(control.path), "failed": sorted(also)}}
    return None


def _judged(row: dict) -> dict:
    """A stateful catch counts when ``tradedrill replay`` reproduces it on a fresh stack and the reference engine
    passes the same schedule (the control); otherwise the symptoms are kept under ``unreproduced`` or
    ``not_attributable`` and the variant is not caught by the stateful test."""
    if row.get("caught_by") != "stateful":
        return row
    if not (row.get("replay") or {}).get("reproduced"):
        row.update(caught_by=None, unreproduced=row.pop("symptoms", None))
    elif (row.get("control") or {}).get("reference_failed"):
        row.update(caught_by=None, not_attributable=row.pop("symptoms", None))
    return row


def _bounds() -> dict:
    return {"search_s": SEARCH_BUDGET_S, "minimise_trials": MINIMISE_TRIALS, "minimise_s": MINIMISE_BUDGET_S,
            "profile": "sweep", "max_examples": PROFILES["sweep"]["max_examples"]}


def _write(rows: list[dict]) -> dict:
    from reports.verification import write_section

    try:   # a piece of the sweep: keep the other variants' rows of the last run, in VARIANTS order
        old = {r["variant"]: r for r in json.loads((OUT / "catch_rate.json").read_text())["variants"]}
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    mine = {r["variant"]: r for r in rows}
    rows = [_judged(mine.get(v) or old[v]) for v in VARIANTS if v in mine or v in old]
    caught = [r for r in rows if r["caught_by"]]
    doc = {"variants": rows, "caught": len(caught), "total": len(rows), "of_variants": len(VARIANTS),
           "catch_rate": len(caught) / len(rows) if rows else None,
           "bounds": _bounds(),
           # rows an earlier piece of the sweep measured with other bounds (each row keeps its own)
           "other_bounds": {r["variant"]: r.get("bounds") for r in rows if r.get("bounds") != _bounds()}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "catch_rate.json").write_text(json.dumps(doc, indent=2, default=str))
    write_section(OUT)
    return doc


def _clear(folder: Path) -> None:
    """Remove ``folder`` (a variant's run folders of the last sweep) once nothing of it runs. A stack a killed
    sweep left there (SIGKILL, or SIGTERM before tests/conftest.py handled it) is stopped first, by the PIDs its
    ``pids.json`` recorded: removing that record left its processes running where no ``tradedrill down`` found
    them, holding the subnet's ports. A stack another live sweep runs there refuses this one."""
    try:
        stopped = StackIndex().reap_under(folder)
    except SubnetBusy as exc:
        pytest.fail(str(exc), pytrace=False)
    if stopped:
        print(f"stopped {len(stopped)} process(es) an earlier sweep left in {folder}: {', '.join(stopped)}")
    shutil.rmtree(folder, ignore_errors=True)


def test_the_library_and_the_stateful_test_catch_the_broken_engines(tmp_path_factory, record_property):
    unknown = [v for v in CHOSEN if v not in VARIANTS]
    if unknown:
        pytest.fail(f"TRADEDRILL_VARIANTS names {', '.join(unknown)}, not a broken engine of tests/variants/engines.py; "
                    f"known: {', '.join(VARIANTS)}", pytrace=False)
    # the run folders stay (out/verification/runs/<variant>): catch_rate.json names them for `tradedrill replay`
    root = Path(os.environ.get("TRADEDRILL_VARIANT_RUNS") or OUT / "runs")
    rows = []
    for variant in CHOSEN:
        started = time.monotonic()
        row = {"variant": variant, "bug": BUGS[variant], "caught_by": None, "bounds": _bounds()}
        _clear(root / variant)   # this sweep's own folder of the last sweep
        with StatefulSession(variant_options(variant, root / variant, subnet=SUBNET, judged=ALL_CHECKERS,
                                             say=print)) as s:
            verdict = run_search(s, "sweep", DATABASE / "variants" / variant, search_budget_s=SEARCH_BUDGET_S,
                                 minimise_trials=MINIMISE_TRIALS, minimise_budget_s=MINIMISE_BUDGET_S)
            row["examples"] = len(s.examples) - s.minimised.get("trials", 0)
            row["search_and_minimise_s"] = round(time.monotonic() - started, 1)
            row["minimise"] = {k: v for k, v in s.minimised.items() if k != "log"} or None
        if verdict is not None:
            steps = [{k: v for k, v in st.items() if k != "note"} for st in verdict.steps]
            row.update(caught_by="stateful", run_dir=str(verdict.run_dir), symptoms=verdict.symptoms,
                       shrunk_steps=len(steps), schedule=steps, notes=[st.get("note") for st in verdict.steps])
            # a race the schedule sets up shows in some runs only: up to REPLAY_ATTEMPTS fresh stacks, the first
            # that reproduces counts, and the row says which attempt it was
            reps = replay_attempts(verdict.run_dir, subnet=SUBNET, out_dir=verdict.run_dir / "replay-1",
                                   attempts=REPLAY_ATTEMPTS)
            rep = reps[-1]
            row["replay"] = {"reproduced": rep.reproduced, "attempts": len(reps),
                             "found": [s["checker"] for s in rep.replay.symptoms], "run_dir": str(rep.replay.run_dir)}
            # the control: the same schedule against the reference engine, as many times as the variant could be
            # replayed; a symptom it shows in any of them is not the variant's bug (a finding about the reference,
            # or a schedule that fails anyway): no catch
            controls = replay_attempts(verdict.run_dir, subnet=SUBNET, out_dir=verdict.run_dir / "control-1",
                                       attempts=REPLAY_ATTEMPTS, until_reproduced=False, engine={})
            row["control"] = {"reference_failed": any(c.reproduced for c in controls), "attempts": len(controls),
                              "failed_attempts": sum(c.reproduced for c in controls),
                              "found": [f"{s['checker']}: {s['summary']}" for c in controls
                                        for s in c.replay.symptoms],
                              "run_dir": str(controls[0].replay.run_dir.parent.parent)}
            _judged(row)
        if not row["caught_by"]:
            lib = _library_catch(variant, root / variant / "library")
            if lib is not None:
                row.update(caught_by=f"library:{lib['scenario']}", run_dir=lib["run_dir"], symptoms=lib["symptoms"],
                           library={"settings": lib["settings"], "control": lib["control"]})
        row["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        record_property(f"variant_{variant}", row["caught_by"] or "missed")
        doc = _write(rows)   # after every variant: an interrupted sweep keeps what it measured
    caught = [r for r in rows if r["caught_by"]]
    record_property("catch_rate", doc["catch_rate"])
    missed = [r["variant"] for r in rows if not r["caught_by"]]
    assert len(caught) >= 0.95 * len(rows), f"caught {len(caught)} of {len(rows)}; missed {missed}"
    not_replayed = [r["variant"] for r in rows if r.get("replay") and not r["replay"]["reproduced"]]
    assert not not_replayed, f"tradedrill replay did not reproduce {not_replayed}"
    long = {r["variant"]: r["shrunk_steps"] for r in rows if (r.get("shrunk_steps") or 0) > TARGET_STEPS}
    record_property("longer_than_target", json.dumps(long))
