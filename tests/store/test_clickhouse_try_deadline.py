"""CH-1's cadence whatever way ClickHouse is gone (issue 17's docker finding): a killed ClickHouse *container*
leaves an address that drops packets, so connects hang where a killed local process refuses at once; the sync then
retried every 10.04 s instead of 5 and nothing reached failed_syncs. Every failed try must end within its deadline
(``timeout_s``, below ``retry_s``), so the tries start ``retry_s`` apart and the 3 retries then the failed_syncs
hand-off happen on time. In-process: listeners on loopback 127.0.114.x stand in for the server, the real
clickhouse-connect client talks to them, and the sync runs on its own thread in real time."""
from __future__ import annotations

import selectors
import socket
import threading

import pytest

from reference.engine.config import ConfigError, EngineConfig
from reference.engine.journal import Intent, Journal
from reference.store.clickhouse_sync import KIND, TARGET, ClickHouseSettings, ClickHouseSync, ClickHouseTarget
from tradedrill.waiting import wait_until

HOST = "127.0.114.3"
TIMEOUT_S = 1.0      # one try's deadline (whole seconds: the bound old clients could also be given)
RETRY_S = 1.5        # CH-1's 5 s, scaled down
RETRIES = 3          # CH-1
SCHEDULE_SLACK_S = 0.25   # the thread wakes at the due time; this is scheduling noise, not a speed bound
N = 20


# --- servers that are not ClickHouse ------------------------------------------------------------------------------
class Refusing:
    """A port that refuses connections: bound (so nobody else takes it), never listening."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class NeverAccepting:
    """``backlog`` > 0: the kernel completes every handshake and queues the connection, nobody ever reads the
    request or answers (a server that accepts and hangs). ``backlog`` = 0 with its one slot taken: the accept
    queue is full, so Linux drops every further SYN and a connect hangs (a host gone from the network)."""

    def __init__(self, backlog: int):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.filler: socket.socket | None = None
        if backlog == 0:
            self.filler = socket.create_connection((HOST, self.port), timeout=2.0)   # takes the only slot
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                with pytest.raises(TimeoutError):
                    probe.connect((HOST, self.port))   # the premise: a connect now hangs (SYN dropped)
            finally:
                probe.close()

    def close(self) -> None:
        if self.filler is not None:
            self.filler.close()
        self.sock.close()


class Trickling:
    """Accepts, then answers one byte of an endless HTTP header every 0.1 s: every read gets something in time,
    so no socket timeout ever fires (a slow answer that never ends)."""

    ANSWER = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60_000

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="trickling-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        conns: dict[socket.socket, int] = {}
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    if key.fileobj is self.sock:
                        conn, _ = self.sock.accept()
                        conn.setblocking(False)
                        conns[conn] = 0
                        sel.register(conn, selectors.EVENT_READ)
                    elif key.fileobj is not self._wake_r:
                        conn = key.fileobj
                        try:
                            data = conn.recv(65536)
                        except OSError:
                            data = b""
                        if not data:
                            sel.unregister(conn)
                            conns.pop(conn, None)
                            conn.close()
                for conn, sent in list(conns.items()):
                    try:
                        conn.send(self.ANSWER[sent:sent + 1])
                        conns[conn] = sent + 1
                    except OSError:
                        pass
        finally:
            for conn in conns:
                conn.close()
            sel.close()

    def close(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(5.0)
        assert not self._thread.is_alive(), "the trickling server did not stop"
        self._wake_r.close()
        self._wake_w.close()
        self.sock.close()


SERVERS = {
    "refused": Refusing,
    "syn-dropped": lambda: NeverAccepting(0),
    "accepts-never-answers": lambda: NeverAccepting(16),
    "answers-forever-slowly": Trickling,
}


# --- the engine side ----------------------------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.alerts: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()

    def emit(self, event: str, **fields) -> None:
        with self._lock:
            self.events.append((event, fields))

    def alert(self, kind: str, message: str, **fields) -> None:
        with self._lock:
            self.alerts.append((kind, message, fields))

    def named(self, event: str) -> list[dict]:
        with self._lock:
            return [f for e, f in self.events if e == event]


def final_outcomes(journal: Journal, n: int) -> list[str]:
    intents = []
    for k in range(n):
        sig = {"signal_id": f"sig-{k}", "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01}
        intent = Intent(signal_id=f"sig-{k}", entry_id=f"{1_700_000_000_000 + k}-0", signal=sig, attempt=1,
                        comment=f"td{k}-1", broker="primary")
        intent.state = "DONE"
        intent.result = {"status": "executed", "code": "10009", "order": 500_000 + k, "deal": 900_000 + k,
                         "price": 1.1}
        intents.append(intent)
    journal.put_many(intents)
    return [i.signal_id for i in intents]


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal-A.duckdb")
    yield j
    j.close()


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_failed_tries_start_retry_s_apart_then_failed_syncs(kind, journal, tmp_path):
    """CH-1 whatever the failure mode: the tries start retry_s apart (the next try is due retry_s after the
    previous *start*, so a try must end before that), each one ended within the deadline, and after the 3
    retries every waiting outcome is in one failed_syncs row."""
    server = SERVERS[kind]()
    password = tmp_path / "ch.password"
    password.write_text("s3cret-never-shown\n")
    rec = Recorder()
    settings = ClickHouseSettings(url=f"http://{HOST}:{server.port}", password_file=str(password), table="t",
                                  interval_s=0.05, timeout_s=TIMEOUT_S, retry_s=RETRY_S, retries=RETRIES)
    sync = ClickHouseSync(journal, ClickHouseTarget(settings), instance="A", emit=rec.emit, alert=rec.alert)
    ids = final_outcomes(journal, N)
    try:
        sync.start()
        added = wait_until(lambda: rec.named("clickhouse_failed_sync_added"), timeout=(RETRIES + 1) * RETRY_S + 10,
                           what=f"the failed_syncs hand-off after {RETRIES} retries ({kind})")
    finally:
        sync.stop(timeout=10.0)
        server.close()
    tries = [e for e in rec.named("clickhouse_sync_failed") if "attempt" in e][:RETRIES + 1]
    assert [e["attempt"] for e in tries] == list(range(1, RETRIES + 2)), tries
    starts = [e["started"] for e in tries]
    gaps = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
    assert all(RETRY_S - 0.001 <= g <= RETRY_S + SCHEDULE_SLACK_S for g in gaps), (kind, gaps, tries)
    assert all(e["took_s"] < RETRY_S for e in tries), (kind, [e["took_s"] for e in tries])
    assert added[0]["outcomes"] == N and added[0]["attempts"] == RETRIES + 1
    rows = journal.failed_syncs(TARGET)
    assert len(rows) == 1 and rows[0]["kind"] == KIND and sorted(rows[0]["payload"]["signal_ids"]) == sorted(ids)
    assert [a[0] for a in rec.alerts] == ["clickhouse_sync_failed"]
    for e in tries:
        assert "\n" not in e["error"] and "s3cret" not in e["error"] and f"{HOST}:{server.port}" in e["error"]
        if kind == "refused":
            assert "connection refused" in e["error"]
        else:
            assert f"no answer within {TIMEOUT_S:g} s" in e["error"], e["error"]


def test_probe_and_stop_flush_end_within_the_deadline(journal, tmp_path):
    """While failed_syncs rows wait, ClickHouse is probed every retry_s (CH-1's recovery under 5 s): a probe of a
    host that drops packets ends within the deadline too, and a stop with outcomes waiting ends within its flush
    time and keeps them in failed_syncs."""
    server = NeverAccepting(0)
    rec = Recorder()
    settings = ClickHouseSettings(url=f"http://{HOST}:{server.port}", table="t", timeout_s=TIMEOUT_S,
                                  retry_s=RETRY_S)
    target = ClickHouseTarget(settings)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    try:
        result = {}
        probe = threading.Thread(target=lambda: result.setdefault("ok", target.ping()), daemon=True)
        probe.start()
        probe.join(TIMEOUT_S + 2.0)
        assert not probe.is_alive() and result == {"ok": False}
        final_outcomes(journal, 5)
        stopper = threading.Thread(target=lambda: sync.stop(flush_s=0.5), daemon=True)
        stopper.start()
        stopper.join(0.5 + 2.0)
        assert not stopper.is_alive()
    finally:
        server.close()
    rows = journal.failed_syncs(TARGET)
    assert len(rows) == 1 and len(rows[0]["payload"]["signal_ids"]) == 5
    flushed = rec.named("clickhouse_sync_stop_flush")[0]
    assert flushed["failed_syncs"] == 5 and flushed["took_s"] < 0.5 + 1.0, flushed


@pytest.mark.parametrize("timeout_s, retry_s", [(5.0, 5.0), (6.0, 5.0)])
def test_a_try_deadline_not_below_the_retry_interval_is_refused(timeout_s, retry_s):
    with pytest.raises(ConfigError) as err:
        EngineConfig.from_mapping({"instance": "A", "clickhouse_url": "http://127.0.114.1:8123",
                                   "clickhouse_timeout_s": timeout_s, "clickhouse_retry_s": retry_s})
    message = str(err.value)
    assert "\n" not in message and "clickhouse_timeout_s" in message and "clickhouse_retry_s" in message
    assert "lower clickhouse_timeout_s" in message


def test_the_default_try_deadline_keeps_ch1_cadence():
    cfg = EngineConfig.from_mapping({"instance": "A", "clickhouse_url": "http://127.0.114.1:8123"})
    assert cfg.clickhouse_retry_s == 5.0 and cfg.clickhouse_retries == 3      # CH-1
    assert cfg.clickhouse_timeout_s <= cfg.clickhouse_retry_s / 2            # a try ends well before the next
    assert ClickHouseSettings(url="http://127.0.114.1:8123").timeout_s == cfg.clickhouse_timeout_s
