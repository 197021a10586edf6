"""The Expert Advisor's tick stream (EA-1..EA-5, BR-3, PERF-1; issue 14).

- ``wire``: the versioned frame format (UDP datagrams and length-prefixed TCP frames).
- ``streamer``: the EA process (``python -m reference.ea run --config ea.json``): broker ticks out on UDP and TCP.
- ``consumer``: the library a tick reader uses: first copy of each seq from either path, in order, UDP->TCP fallback,
  TCP reconnects 2 s x 10 then an alert, a clean buffer after a reconnect, a JSONL record of what it delivered.

The supervisor policy is ``reference.supervisor.POLICIES["ea"]`` (EA-1).
"""
