import pytest
import redis

from faults.core import FaultLog
from faults.process import CrashLoop, Kill, Pause, Restart, Terminate
from tradedrill.waiting import wait_until

from .conftest import quick_redis


def test_kill_breaks_the_client_and_heal_restarts(redis_primary, tmp_path):
    log = FaultLog(tmp_path / "faults.jsonl")
    client = quick_redis("127.0.4.2")
    client.set("k", "v")
    old_pid = redis_primary.pid
    with Kill(redis_primary, log=log) as fault:
        assert not redis_primary.is_alive()
        with pytest.raises(redis.ConnectionError):
            client.ping()
    assert redis_primary.is_alive() and redis_primary.pid != old_pid
    assert quick_redis("127.0.4.2").ping()
    lines = log.read()
    assert lines[0]["details"]["pid"] == old_pid and lines[1]["event"] == "heal"
    assert fault.describe() == "SIGKILL redis"


def test_terminate_and_restart(redis_primary):
    with Terminate(redis_primary):
        assert not redis_primary.is_alive()
    assert quick_redis("127.0.4.2").ping()
    old = redis_primary.pid
    with Restart(redis_primary):
        pass
    assert redis_primary.pid != old and quick_redis("127.0.4.2").ping()


def test_pause_makes_the_client_time_out_and_resume_serves_again(redis_primary):
    client = quick_redis("127.0.4.2", timeout=0.3)
    client.ping()
    with Pause(redis_primary):
        assert redis_primary.is_alive()
        with pytest.raises(redis.TimeoutError):
            quick_redis("127.0.4.2", timeout=0.3).ping()
    assert quick_redis("127.0.4.2").ping()


def test_crash_loop_kills_repeatedly_and_heal_leaves_it_running(redis_primary):
    loop = CrashLoop(redis_primary, interval=0.05, max_kills=3)
    with loop:
        wait_until(lambda: len(loop.kills) >= 3, 15, "three crashes")
    assert len({pid for _, pid in loop.kills}) == 3
    redis_primary.wait_ready()
    assert quick_redis("127.0.4.2").ping()
