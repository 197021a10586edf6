"""Throughput kept under a fault that stalls some orders (issue 11): "during a lost-reply fault at 30 %, other
signals keep >= 90 % of the offered rate".

Pure, over the run's history and fault log, like every checker. For each window of the named fault (default
``broker-lose-reply``): ``offered`` = trade operations invoked inside the window; ``prompt`` = those of them
answered (ok or fail) within ``prompt_s`` seconds (default 1.0); the signals whose reply the fault lost
(a fraction ``loss`` of them, the fault's own rate) are expected late, so

    kept_rate_fraction = prompt / (offered x (1 - loss))

A single trading thread that waits out each lost reply, or a pool of send lanes that lost replies all hold, answers
few signals promptly and scores far below 1; an engine that parks the ambiguous order and goes on scores about 1.
Evidence: per window the offered and prompt rates (per second), the loss used, and the slowest prompt-eligible
operations. No window of the fault, or no operation invoked inside one: ``unmeasured``, never pass.
"""
from __future__ import annotations

from typing import Sequence

from scenarios import history as h
from scenarios import targets as targets_mod
from scenarios.verdicts import judge, validity

METRIC = "kept_rate_fraction"
RULE = ("kept_rate_fraction = trade operations invoked inside the fault window and answered (ok or fail) within "
        "prompt_s / (operations invoked inside the window x (1 - loss)); loss = the fault's own reply-loss rate "
        "(its replies are expected late: the engine reconciles them by comment). The worst window counts.")


def check_kept_rate(ops: Sequence[h.Operation], windows: Sequence[h.FaultWindow], *, fault: str = "broker-lose-reply",
                    loss: float = 0.0, prompt_s: float = 1.0, requirement_ids: Sequence[str] = ("ENG-5",),
                    targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None):
    """``ops``: the history's operations; ``windows``: fault windows; ``loss`` in [0, 1); ``prompt_s`` seconds.
    Returns the checker table's CheckResult (built with the helpers ``scenarios.checkers`` passes in)."""
    trades = [op for op in ops if op.f == "trade"]
    wins = [w for w in windows if w.fault == fault]
    if not wins:
        return unmeasured(result_cls, "kept_rate", requirement_ids, targets, (METRIC,),
                          f"no {fault} fault window in the run: nothing stalled, the kept rate cannot be told")
    if not 0.0 <= loss < 1.0:
        return unmeasured(result_cls, "kept_rate", requirement_ids, targets, (METRIC,),
                          f"loss must be in [0, 1), not {loss!r}: fix the scenario's checker parameters")
    end = max([op.complete_mono or op.invoke_mono for op in trades], default=0.0)
    evidence: list[dict] = []
    worst: float | None = None
    for w in wins:
        heal = w.heal_mono if w.heal_mono is not None else end
        inside = [op for op in trades if w.inject_mono <= op.invoke_mono < heal]
        if not inside:
            continue
        prompt = [op for op in inside if op.outcome in (h.OK, h.FAIL) and op.latency is not None
                  and op.latency <= prompt_s]
        span = max(heal - w.inject_mono, 1e-9)
        fraction = len(prompt) / (len(inside) * (1.0 - loss))
        late = sorted((op for op in inside if op not in prompt), key=lambda o: -(o.latency or float("inf")))[:10]
        evidence.append({"kind": "window", "fault_id": w.fault_id, "seconds": round(span, 3),
                         "offered": len(inside), "offered_per_s": round(len(inside) / span, 2),
                         "prompt": len(prompt), "prompt_per_s": round(len(prompt) / span, 2), "loss": loss,
                         "prompt_s": prompt_s, "kept_rate_fraction": round(fraction, 4),
                         "slowest": [{"key": op.key, "outcome": op.outcome,
                                      "latency_s": None if op.latency is None else round(op.latency, 3)}
                                     for op in late]})
        worst = fraction if worst is None else min(worst, fraction)
    if worst is None:
        return unmeasured(result_cls, "kept_rate", requirement_ids, targets, (METRIC,),
                          f"no trade operation was invoked inside a {fault} window: no offered rate to keep")
    evidence.append({"kind": "rule", "rule": RULE})
    judgements = judge({METRIC: worst}, requirement_ids, targets)
    first = evidence[0]
    summary = (f"{first['prompt_per_s']} of {first['offered_per_s']} signals/s answered within {prompt_s:g} s during "
               f"{fault} (loss {loss:.0%}): kept {worst:.0%} of the rate the fault leaves")
    return result_cls("kept_rate", validity(judgements), tuple(requirement_ids), {METRIC: worst,
                      "offered_per_s": first["offered_per_s"], "prompt_per_s": first["prompt_per_s"]},
                      evidence, summary, judgements)


def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """The checker as a ``scenarios.checkers.Checker`` row (``kept_rate``; params ``fault``, ``loss``,
    ``prompt_s``)."""

    def fn(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return check_kept_rate(view.operations(), view.fault_windows(),
                               fault=str(params.get("fault", "broker-lose-reply")),
                               loss=float(params.get("loss", 0.0)), prompt_s=float(params.get("prompt_s", 1.0)),
                               requirement_ids=rids, targets=targets, result_cls=result_cls,
                               unmeasured=unmeasured)

    return [checker_cls("kept_rate", fn, (METRIC,),
                        "signals invoked during a fault that stalls some orders and answered within prompt_s, "
                        "against the rate the fault leaves (issue 11)", ("fault", "loss", "prompt_s"))]
