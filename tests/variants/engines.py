"""Deliberately broken trade engines for measuring the verification power of the scenario library and the stateful
test (issue 16, part 4). Each is a realistic bug of a trading engine, built here in the test tree as a subclass or a
patch of ``reference.engine``; production code carries no switch for any of them.

``python -m tests.variants.engines VARIANT run --config FILE --instance A --state-dir DIR`` runs the real engine
CLI with the variant in place (the same way as ``tests.drills.broken_engines``, whose five variants are reused).

:data:`BUGS` says, per variant, the bug and the symptom it should leave (what a checker must name).
"""
from __future__ import annotations

import sys

from reference.engine import engine as engine_module
from reference.engine import contract
from reference.engine.engine import Engine
from reference.engine.retcodes import Outcome
from tests.drills import broken_engines as drills


class RequoteAsFilled(Engine):
    """Bug: a requote (REQUOTE / PRICE_CHANGED) is taken for a fill: published ``executed`` with no order at the
    broker (breaks BRK-4). Symptom: an acknowledged signal RTRS calls executed that no broker holds."""

    def _on_reply(self, intent, session, result, err, done):
        if result is not None:
            retcode = int(engine_module._field(result, "retcode", 0))
            if session.table.classify(retcode) is Outcome.REPRICE:
                self.emit("requote_taken_as_fill", signal_id=intent.signal_id, retcode=retcode)
                done.append((intent, "DONE", "REQUOTE_AS_DONE", "", {"order": 0, "deal": 0, "retcode": retcode}))
                return False
        return super()._on_reply(intent, session, result, err, done)


class RequoteSamePrice(Engine):
    """Bug: a requote is retried at once under the next attempt's comment with the old request (no fresh price, no
    lookup first): the broker may still fill the first request late (a lost reply on a requote path), so the retry
    is a second order. Symptom: duplicate orders under requotes with lost replies; else slippage."""

    def _on_reply(self, intent, session, result, err, done):
        if result is None and err:
            # an ambiguous answer is retried like a requote: resend at once, no reconciliation
            intent.state = "DEFERRED"
            intent.requotes += 1
            self.journal.put(intent)
            self.emit("retry_without_fresh_price", signal_id=intent.signal_id)
            return intent.requotes <= self.cfg.requote_retries
        return super()._on_reply(intent, session, result, err, done)


class ShortComment(Engine):
    """Bug: the order comment carries only 1 character of the signal's hash (a "shortened" comment to fit a broker's
    limit), so many signals share a comment prefix; lookups before a resend or after a takeover adopt another
    signal's order. Symptom: a signal reported executed with no order of its own (lost), RTS against the ledger."""


def _short_prefix(signal_id: str, prefix: str = "td") -> str:
    return prefix + contract.signal_key(signal_id)[:1] + "-"


def _short_comment(signal_id: str, attempt: int, prefix: str = "td", max_len: int = 24) -> str:
    return f"{_short_prefix(signal_id, prefix)}{attempt}"


def short_comment_signal_of(signal_ids):
    """The checkers' comment -> signal mapping for ``short-comment``'s orders (``td<1 char>-<attempt>``): the harness
    reads an engine's orders by the comments that engine writes (``SessionOptions.signal_of``). Signals that share
    the character share the comment, and the ledger cannot tell their orders apart: the last of them is named."""
    index = {_short_prefix(s): s for s in signal_ids}

    def signal_of(comment):
        c = (comment or "").strip()
        head, sep, attempt = c.rpartition("-")
        return index.get(head + sep) if sep and attempt.isdigit() else None
    return signal_of


SIGNAL_OF: dict[str, str] = {"short-comment": "tests.variants.engines:short_comment_signal_of"}


class ShortLookback(Engine):
    """Bug: the reconciliation window is far too short (history queried for the last 50 ms instead of days): an
    order the broker executed a moment ago is out of the window, so an ambiguous send is judged "not sent" and
    resent. Symptom: duplicate orders under lost replies and after a takeover."""

    def __init__(self, config, *args, **kwargs):
        config.reconcile_lookback_s = 0.05
        config.ambiguous_grace_s = 0.0
        super().__init__(config, *args, **kwargs)


class NoRecoveryAfterTakeover(Engine):
    """Bug: a new active instance neither reconciles nor scans the broker at takeover, and takes the old holder's
    pending entries for new ones (no lookup before sending them). Symptom: the order the old active sent before it
    died or froze is sent again (duplicate)."""

    def reconcile_in_flight(self):
        self.emit("takeover_recovery_skipped")

    def scan_broker(self, quiet: bool = False, connect: bool = True):
        # the reference's signature (the passive's warm scan and the orphan claim pass both): a variant that took
        # none crashed at its first passive scan, caught for a TypeError rather than for its bug
        self.known.clear()
        self._scan_complete = True

    def handle_entry(self, entry_id, fields, redelivered):
        return super().handle_entry(entry_id, fields, False)


class DedupeByEntry(Engine):
    """Bug: idempotency keyed by the RTSS entry, not the signal id: a sender's resend of the same signal (a new
    entry, after an unconfirmed WAIT) is a new order. Symptom: duplicate orders for resent signals."""

    def handle_entry(self, entry_id, fields, redelivered):
        journal_get = self.journal.get
        sid = engine_module.signal_id_of(fields)

        def get(signal_id):
            found = journal_get(signal_id)
            if found is not None and found.entry_id != entry_id:
                self.emit("resend_taken_as_new", signal_id=sid, entry_id=entry_id)
                return None
            return found
        self.journal.get = get
        try:
            return super().handle_entry(entry_id, fields, redelivered)
        finally:
            self.journal.get = journal_get


class NoBrokerFallback(Engine):
    """Bug: the engine never switches to the backup broker (BRK-2): with the primary down, signals wait for it.
    Symptom: only the recovery time (a liveness bug): no safety checker can see it unless the outage outlasts the
    settle."""

    def __init__(self, config, *args, **kwargs):
        config.broker_switch_after = 10**6
        super().__init__(config, *args, **kwargs)


class NoFencing(Engine):
    """Bug: the lease is checked once, before the engine reads a batch from RTSS, and not again before order_send
    (no fencing check at the send: "we held the lease when we took the work"). An engine frozen while it waits in
    XREADGROUP is handed the next signals by Redis; its successor claims them from the pending list and sends them;
    on waking the old holder sends the batch too. Symptom: sends by a superseded lease holder (one_active), a
    duplicate order when its successor sent the same signal."""

    def read_new(self) -> int:
        lease = self.lease
        checked = type(lease).can_send(lease)       # the one check, before the read
        lease.can_send = lambda: checked
        try:
            return super().read_new()
        finally:
            del lease.can_send                      # the class's check again, for the next read's own check


VARIANTS: dict[str, type[Engine]] = {
    **drills.VARIANTS,
    "requote-as-filled": RequoteAsFilled,
    "retry-without-fresh-price": RequoteSamePrice,
    "short-comment": ShortComment,
    "short-reconcile-window": ShortLookback,
    "no-recovery-after-takeover": NoRecoveryAfterTakeover,
    "dedupe-by-entry": DedupeByEntry,
    "no-broker-fallback": NoBrokerFallback,
    "no-fencing": NoFencing,
}

def _first_sentence(doc: str | None) -> str:
    """The docstring's first sentence, joined across its lines (a first line alone cut the bug mid-sentence in the
    report: "... a "shortened" comment to fit a broker's", a new user's finding)."""
    text = " ".join((doc or "").split("\n\n")[0].split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


BUGS: dict[str, str] = {name: _first_sentence(cls.__doc__) for name, cls in VARIANTS.items()}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in VARIANTS:
        print(f"usage: python -m tests.variants.engines {{{'|'.join(VARIANTS)}}} run --config FILE --instance NAME "
              f"[--state-dir DIR]", file=sys.stderr)
        return 2
    engine_module.Engine = VARIANTS[argv[0]]
    if argv[0] == "short-comment":
        engine_module.order_comment = _short_comment
        engine_module.comment_prefix_for = _short_prefix
    from reference.cli import engine as engine_cli

    return engine_cli.main(args=argv[1:], prog_name=f"broken-engine {argv[0]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
