"""The real pair behind the real proxy (issue 15, BE-1/BE-2): ``--services redis,backend`` runs two uvicorn
backends (supervised with BE-1's policy) and Debian's nginx on 127.0.86.x, with the Redis topology, its ACLs and
WAIT 1. Webhooks through the one URL keep succeeding while backend A is SIGKILLed or SIGSTOPped; a retried alert is
one RTSS entry; the passphrase file is 0600 and in no log."""
from __future__ import annotations

import shutil
import stat
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reference.engine.contract import Keys
from tests.backend.conftest import STACK_BLOCK
from tradedrill.local import LocalStack
from tradedrill.services.backend import http_get, read_passphrase
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if shutil.which("nginx") is None and not shutil.os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (bash run.sh setup)")
    base = tmp_path_factory.mktemp("backend-stack")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRADEDRILL_STATE_DIR", str(base / "state"))
    topo = Topology.default(subnet=STACK_BLOCK, services=("redis", "backend"),
                            overrides={"backend.port": 18600, "backend.proxy_port": 18680})
    s = LocalStack(topo, base / "stack")
    try:
        s.up()
        yield s
    finally:
        s.down()
        mp.undo()


def _client(stack) -> httpx.Client:
    proxy = stack.topology.node("proxy")
    return httpx.Client(base_url=f"http://{proxy.address}:{proxy.port}", timeout=5.0)


def _alert(stack, alert_id: str) -> dict:
    return {"passphrase": read_passphrase(stack.run_dir), "alert_id": alert_id, "symbol": "EURUSD", "side": "buy",
            "volume": 0.01}


def _rtss_ids(stack) -> list[str]:
    return [f["signal_id"] for _, f in stack.redis(timeout=2.0).xrange(Keys().rtss)]


def test_retried_alerts_through_the_proxy_are_one_signal_each(stack):
    with _client(stack) as c:
        def post(alert_id):
            return c.post("/webhook/tradingview", json=_alert(stack, alert_id)).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(post, [f"retry-{i}" for i in range(4) for _ in range(4)]))
        assert codes.count(202) == 4 and set(codes) <= {200, 202, 409}, codes
        assert sorted(i for i in _rtss_ids(stack) if i.startswith("tv-retry-")) == [f"tv-retry-{i}" for i in range(4)]
        assert c.get("/ready").json()["redis_primary"]


def _load_across(stack, fault, tag: str, n: int = 60) -> list[int]:
    """Post ``n`` alerts one after another through the proxy while ``fault()`` runs after the 10th."""
    codes = []
    with _client(stack) as c:
        for i in range(n):
            if i == 10:
                fault()
            codes.append(c.post("/webhook/tradingview", json=_alert(stack, f"{tag}-{i}")).status_code)
    return codes


def test_requests_keep_succeeding_while_backend_a_is_killed_and_restarted(stack):
    a = stack.node("backend-a")
    before = a.pid
    codes = _load_across(stack, a.kill, "kill")
    assert codes == [202] * len(codes), codes
    # BE-1: the supervisor restarts it (RestartSec=3) and it serves again
    wait_until(lambda: a.is_alive() and a.pid != before and http_get(a.address, a.port, "/health")[0] == 200, 15,
               "backend-a restarted by its supervisor")
    assert any(e.event == "restart" and e.program == "backend-a" for e in stack.supervisors["backend"].events)


def test_requests_keep_succeeding_while_backend_a_is_frozen(stack):
    a = stack.node("backend-a")
    wait_until(lambda: a.is_alive() and http_get(a.address, a.port, "/health")[0] == 200, 15, "backend-a serving")
    try:
        a.pause()
        codes = _load_across(stack, lambda: None, "pause", n=30)
    finally:
        a.resume()
    assert all(code in (202, 200) for code in codes), codes
    assert len([i for i in _rtss_ids(stack) if i.startswith("tv-pause-")]) == 30


def test_passphrase_is_private_and_never_logged(stack):
    secret_file = stack.secrets.folder / "webhook.passphrase"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    passphrase = read_passphrase(stack.run_dir)
    with _client(stack) as c:
        c.post("/webhook/tradingview", json={**_alert(stack, "log-1"), "volume": -1})
        c.post("/webhook/tradingview", json={**_alert(stack, "log-2"), "passphrase": passphrase + "x"})
    for path in stack.run_dir.rglob("*"):
        if path.is_file() and "secrets" not in path.parts and path.suffix in (".log", ".json", ".conf"):
            assert passphrase not in path.read_text(errors="replace"), path


def test_a_body_over_the_limit_gets_the_backends_json_413_through_the_proxy(stack):
    """Before: nginx's client_max_body_size was 16 KB, so above it nginx answered an HTML 413 itself and the
    sender never learnt the limit. Now nginx passes bodies up to 64 KB on (the backend answers its JSON),
    and anything larger gets nginx's own 413 in the same JSON shape."""
    from reference.backend.config import BackendConfig

    limit = f"at most {BackendConfig.max_body_bytes} bytes"
    with _client(stack) as c:
        big = {**_alert(stack, "big-1"), "comment": "x" * 20_000}
        got = c.post("/webhook/tradingview", json=big)
        assert got.status_code == 413 and got.headers["content-type"].startswith("application/json"), got.text
        assert limit in got.json()["error"], got.text
        huge = c.post("/webhook/tradingview", content=b"{" + b" " * 200_000 + b"}",
                      headers={"content-type": "application/json"})
        assert huge.status_code == 413 and huge.headers["content-type"].startswith("application/json"), huge.text
        assert limit in huge.json()["error"], huge.text
