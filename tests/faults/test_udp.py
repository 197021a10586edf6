"""UDP faults through our proxy (an extension of the Toxiproxy API), seeded per run."""
import socket
import time

import pytest

from faults.network import LinkFaults, ToxiproxyAPI

from .conftest import hostport
from .udp_client import exchange

N = 2000
TOLERANCE = 0.04  # absolute: the measured loss rate is within 4 points of the setting


@pytest.fixture
def udp_links(toxiproxy_server):
    with LinkFaults(toxiproxy_server.url, seed=99) as lf:
        yield lf


@pytest.fixture
def udp_link(udp_links, udp_echo):
    return hostport(udp_links.proxy("ticks", upstream=udp_echo.address, listen="127.0.4.32:0", protocol="udp"))


def test_udp_proxy_passes_datagrams_without_toxics(udp_link):
    assert sorted(exchange(udp_link, 200)) == list(range(200))


def test_udp_loss_rate_is_within_tolerance_and_heal_restores(udp_links, udp_link):
    with udp_links.udp_loss("ticks", 0.3, stream="upstream"):
        got = exchange(udp_link, N)
    rate = 1 - len(got) / N
    assert abs(rate - 0.3) <= TOLERANCE, rate
    assert len(set(got)) == len(got)
    assert sorted(exchange(udp_link, 200)) == list(range(200))


def test_udp_loss_replays_from_the_seed(toxiproxy_server, udp_echo):
    api = ToxiproxyAPI(toxiproxy_server.url)
    runs = []
    for _ in range(2):
        addr = hostport(api.create_proxy("replay", udp_echo.address, "127.0.4.32:0", protocol="udp",
                                         seed=1234)["listen"])
        api.add_toxic("replay", "loss", {"probability": 0.5}, stream="upstream")
        runs.append(sorted(exchange(addr, 300)))
        api.delete_proxy("replay")
    assert runs[0] == runs[1] and 100 < len(runs[0]) < 200


def test_udp_duplicate_reorder_latency_and_blackhole(udp_links, udp_link):
    with udp_links.udp_duplicate("ticks", 0.5):
        got = exchange(udp_link, 400)
    assert 500 <= len(got) <= 700 and set(got) == set(range(400))

    with udp_links.udp_reorder("ticks", 0.2, delay_ms=15, stream="upstream"):
        got = exchange(udp_link, 400, quiet=0.1)
    assert sorted(got) == list(range(400)) and got != sorted(got)

    with udp_links.udp_latency("ticks", 80):
        start = time.perf_counter()
        got = exchange(udp_link, 1, quiet=1.0)
        assert got == [0] and time.perf_counter() - start >= 0.075

    with udp_links.udp_blackhole("ticks"):
        assert exchange(udp_link, 50, quiet=0.1) == []
    assert sorted(exchange(udp_link, 50)) == list(range(50))


def test_udp_toxics_are_refused_on_tcp_and_vice_versa(toxiproxy_server, udp_link, echo_server):
    from faults.network import ToxiproxyError

    api = ToxiproxyAPI(toxiproxy_server.url)
    with pytest.raises(ToxiproxyError) as exc:
        api.add_toxic("ticks", "bandwidth", {"rate": 1})
    assert exc.value.status == 400
    api.create_proxy("tcp", echo_server, "127.0.4.21:0")
    with pytest.raises(ToxiproxyError):
        api.add_toxic("tcp", "loss", {"probability": 0.1})
    assert api.proxy("ticks")["protocol"] == "udp"
