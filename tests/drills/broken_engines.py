"""Deliberately broken variants of the reference trade engine, to prove the drill checkers catch real bugs.

``python -m tests.drills.broken_engines VARIANT run --config FILE --instance A --state-dir DIR`` runs the real
engine's CLI (``reference.cli:engine``) with ``reference.engine.engine.Engine`` replaced by a subclass that carries
one bug. Production code has no switch for any of this: the bug lives only here, in the test tree.

Variants (each also writes one event per buggy act to the engine's event log, so a test can tell that the failure
the checker found is the one the bug made):

- ``resend-on-timeout``: an ambiguous ``order_send`` outcome (None, TIMEOUT, a call past its deadline) is taken to
  mean "not sent": the order is sent again at once under the next attempt's comment, with no lookup at the broker.
  Event ``blind_resend``. Under the lost-reply drill this executes one signal twice.
- ``ack-before-durable``: every entry read from RTSS is XACKed at once, before its outcome is in the journal, and
  is worked on only after the next read, so an engine killed under load always holds acknowledged, unexecuted
  signals that no other instance will ever claim. Event ``acked_on_read``. Under the engine-kill drill those
  signals are lost.
- ``publish-before-durable``: a batch's results are published (RTRS "executed", RTS, XACK) before its orders are
  sent, and the batch is sent only after the next read. Event ``published_before_durable``. Under the engine-kill
  drill, signals RTRS calls executed never reach the broker.
- ``renew-ignores-holder``: the lease renewal overwrites whoever holds the lease and the fencing counter; after a
  pause the old active takes it back and trades beside its successor. Event ``forced_renewal``. Caught by the one-active and stale-writes
  checkers, not by duplicates/lost/state.
- ``flush-without-results``: outcomes held back by a Redis outage are flushed to RTS and acknowledged without
  their RTRS result. Event ``flushed_without_result``. Caught by the results-delivered checker only.
"""
from __future__ import annotations

import sys
import time

from reference.engine import engine as engine_module
from reference.engine.contract import parse_lease
from reference.engine.engine import Engine, now_ms, signal_id_of
from reference.engine.lease import Acquisition

class ResendOnTimeout(Engine):
    """Bug: an ambiguous send is resent blindly instead of reconciled with the broker (breaks ENG-5)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._resend_blindly: set[str] = set()

    def reconcile_many(self, intents) -> None:   # every reconciliation goes through here (reconcile too)
        for intent in intents:
            self._resend_blindly.add(intent.signal_id)
            self.emit("blind_resend", signal_id=intent.signal_id, attempt=intent.attempt, comment=intent.comment,
                      broker=intent.broker)
            intent.state = "DEFERRED"
            intent.next_try_ms = now_ms()
            self.journal.put(intent)
            self.deferred[intent.signal_id] = intent

    def _lookup(self, intent, session):
        if intent.signal_id in self._resend_blindly:
            return None  # "nothing at the broker": the resend goes ahead
        return super()._lookup(intent, session)


class AckBeforeDurable(Engine):
    """Bug: RTSS entries are acknowledged when read, before their outcome is durable (breaks ENG-1 RPO 0).

    To make the loss certain rather than likely, a batch is worked on only after the next read (or once a read
    comes back empty): while signals keep arriving, the latest batch is always acknowledged and not yet executed,
    so a kill at any moment of the load loses it. Throughput is unchanged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: list[tuple[str, dict]] = []

    def read_new(self) -> None:
        resp = self.redis.run(lambda r: r.xreadgroup(
            self.group, self.consumer, {self.cfg.rtss_key: ">"}, count=self.cfg.read_count,
            block=self.cfg.read_block_ms))
        entries = [entry for _stream, batch in resp or [] for entry in batch]
        if entries:
            ids = [entry_id for entry_id, _fields in entries]
            self.redis.run(lambda r: r.xack(self.cfg.rtss_key, self.group, *ids))
            for entry_id, fields in entries:
                self.emit("acked_on_read", entry_id=entry_id, signal_id=signal_id_of(fields))
        held, self._held = self._held, entries
        ready = []
        for entry_id, fields in held:
            self.watchdog.beat("read_new")
            intent = self.handle_entry_safely(entry_id, fields, redelivered=False)
            if intent is not None:
                ready.append(intent)
        self.send_batch(ready)


class PublishBeforeDurable(Engine):
    """Bug: a batch's results are published ("executed" on RTRS, RTS, XACK) before its orders are sent and their
    outcomes are durable: group commit done the wrong way round (breaks ENG-5 and RPO 0).

    As in ``AckBeforeDurable`` the batch is sent only after the next read that brings entries, so a kill at any
    moment of the load holds a published, unsent batch. Event ``published_before_durable``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: list = []

    def send_batch(self, intents) -> None:
        if not intents:
            # an empty read (or an empty retry list) does not release the held batch: only the next batch that
            # brings entries does, so a kill at any instant of the load finds one published and unsent (before,
            # an empty call sent it, and a kill that landed in that gap found nothing: 1 CI run in a few)
            return
        if intents:
            for intent in intents:
                intent.result = {"status": "executed", "code": "OPTIMISTIC", "reason": ""}
                self.emit("published_before_durable", signal_id=intent.signal_id, entry_id=intent.entry_id)
            self._publish_pipelined([(self._rts_signal(i.signal_id), i.entry_id, self._result_fields(i))
                                     for i in intents])
            for intent in intents:
                intent.result = {}
        held, self._held = self._held, list(intents)
        super().send_batch(held)


class RenewIgnoresHolder(Engine):
    """Bug: the lease "renewal" re-asserts this instance's last lease whoever holds it: it SETs the lease value and
    the fencing counter to its own token instead of comparing the holder (and, when a refused write made it
    passive, its next acquisition attempt does the same). An active instance frozen past its lease takes it back
    from its successor on waking and trades beside it with its old token (breaks ENG-1: one active engine). Both
    then read the stream and send; each entry goes to one consumer, so no order is duplicated: only the one-active
    and stale-writes checkers see it. Event ``forced_renewal`` each time it overwrote another holder."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        lease = self.lease
        remembered: dict[str, str] = {}
        acquire = lease.try_acquire

        def force(value: str) -> bool:
            start = time.monotonic()
            ttl_ms = int(lease.config.lease_ttl_s * 1000)
            token = parse_lease(value)[1]
            before = lease.link.run(lambda r: r.set(lease.keys[0], value, px=ttl_ms, get=True))
            lease.link.run(lambda r: r.set(lease.keys[1], token))
            if before is not None and before != value:
                self.emit("forced_renewal", value=value, overwrote=before)
            with lease._lock:
                regained = lease.value is None
                lease.value, lease.token = value, token
                lease._deadline = start + lease._sending_window()
                lease._ready_at = min(lease._ready_at, time.monotonic())
            lease.last_renew_ok = start
            if regained:
                lease.changed.set()
            return True

        def renew() -> bool:
            value = lease.value or remembered.get("value")
            if value is None:
                return False
            remembered["value"] = value
            return force(value)

        def try_acquire():
            if "value" in remembered:
                force(remembered["value"])
                return Acquisition(remembered["value"], lease.token, remembered["value"], 0.0)
            got = acquire()
            if got is not None:
                remembered["value"] = got.value
            return got

        lease.renew = renew
        lease.try_acquire = try_acquire


class FlushWithoutResults(Engine):
    """Bug: outcomes that could not be published while Redis was down are flushed afterwards to RTS with an XACK,
    but without their RTRS result (breaks MT5-HA 3.6: every acknowledged signal gets its result). Event
    ``flushed_without_result``."""

    def flush_outcomes(self, batch: int = 200) -> None:
        for intent in self.journal.unpublished():
            fields = self._result_fields(intent)
            key = self._rts_signal(intent.signal_id)
            self.redis.run(lambda r: (r.hset(key, mapping=fields),
                                      r.xack(self.cfg.rtss_key, self.group, intent.entry_id)))
            self.journal.mark_published_many([intent.signal_id])
            self.emit("flushed_without_result", signal_id=intent.signal_id, entry_id=intent.entry_id)


VARIANTS: dict[str, type[Engine]] = {
    "resend-on-timeout": ResendOnTimeout,
    "ack-before-durable": AckBeforeDurable,
    "publish-before-durable": PublishBeforeDurable,
    "renew-ignores-holder": RenewIgnoresHolder,
    "flush-without-results": FlushWithoutResults,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in VARIANTS:
        print(f"usage: python -m tests.drills.broken_engines {{{'|'.join(VARIANTS)}}} run --config FILE "
              f"--instance NAME [--state-dir DIR]", file=sys.stderr)
        return 2
    # reference.cli's ``run`` imports Engine from this module when it is called, so the variant takes its place
    engine_module.Engine = VARIANTS[argv[0]]
    from reference.cli import engine as engine_cli

    return engine_cli.main(args=argv[1:], prog_name=f"broken-engine {argv[0]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
