"""The stages' fork server: forked from a single-threaded supervisor (to share its memory), started as a
fresh interpreter from a threaded one, and in both cases reporting every exit code and surviving its own
death. Each case runs in a fresh interpreter, so whether it may fork does not depend on the test runner."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    from edgecount.supervisor.forkserver import LOST, ForkServer
    from edgecount.supervisor.lifetime import alive

    if sys.argv[1] == "threaded":
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    fs = ForkServer()
    fs.start()
    out = {"mode": fs.mode}
    exits3 = fs.spawn("sys:exit", [3])
    out["exit3"] = fs.exitcode(exits3, timeout=20)
    returns = fs.spawn("json:dumps", [[1]])  # returns a non-int: a clean exit
    out["returns"] = fs.exitcode(returns, timeout=20)
    crashes = fs.spawn("json:loads", ["{"])
    out["crash"] = fs.exitcode(crashes, timeout=20)
    sleeper = fs.spawn("time:sleep", [60])
    out["running"] = fs.exitcode(sleeper, timeout=0.3)
    os.kill(sleeper, signal.SIGKILL)
    out["killed"] = fs.exitcode(sleeper, timeout=20)
    # The server dies: what it forked dies with it, is reported once gone, and a new server takes over.
    orphan = fs.spawn("time:sleep", [60])
    first = fs.pid
    os.kill(first, signal.SIGKILL)
    out["orphan"] = fs.exitcode(orphan, timeout=20)
    out["orphan_gone"] = not alive(orphan)
    again = fs.spawn("sys:exit", [0])
    out["new_server"] = fs.pid != first
    out["again"] = fs.exitcode(again, timeout=20)
    server = fs.pid
    fs.close()
    out["server_reaped"] = not os.path.exists(f"/proc/{server}")
    out["LOST"] = LOST
    print(json.dumps(out))
""")


@pytest.mark.parametrize("caller", ["single", "threaded"])
def test_fork_server_reports_every_exit_and_survives_its_death(caller: str) -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT, caller], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # A threaded caller must not fork (a forked child inherits locks other threads held): a fresh interpreter.
    assert out["mode"] == ("fork" if caller == "single" else "exec")
    assert out["exit3"] == 3
    assert out["returns"] == 0
    assert out["crash"] == 1
    assert out["running"] is None
    assert out["killed"] == -9
    assert out["orphan"] == out["LOST"] and out["orphan_gone"]
    assert out["new_server"] and out["again"] == 0
    assert out["server_reaped"]


def test_a_request_given_up_on_never_runs() -> None:
    """A caller that stopped waiting (and started the work some other way) must not find it running twice: if
    the server forks the abandoned request later, that process is killed at once."""
    code = textwrap.dedent("""
        import json, time
        from edgecount.supervisor.forkserver import ForkServer, ForkServerError
        from edgecount.supervisor.memory import descendants

        fs = ForkServer()
        fs.start()
        try:
            fs.spawn("time:sleep", [120], timeout=0.001)  # the server is still importing
            gave_up = False
        except ForkServerError:
            gave_up = True
        later = fs.spawn("time:sleep", [120])  # answered after the abandoned one was forked
        time.sleep(0.5)
        fs.exitcode(later)
        left = descendants(fs.pid)
        print(json.dumps({"gave_up": gave_up, "left": left, "later": later}))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["gave_up"]
    assert out["left"] == [out["later"]], "the abandoned request is still running"


def test_a_reused_pid_is_not_taken_for_dead() -> None:
    """Issue 32, LOW: exit codes were kept by pid, so a new stage that got the pid of an old, exited one was
    reported dead at once and started a second time. The server's messages arrive in order (it reaps a
    process before its pid can be reused): an exit on record for a pid that starts again is the old one's."""
    import json
    import socket

    from edgecount.supervisor.forkserver import ForkServer

    fs = ForkServer()
    ours, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fs._sock = ours
    try:
        fs._live.add(4242)
        server.send(json.dumps({"op": "exited", "pid": 4242, "code": -9}).encode())
        assert fs.exitcode(4242, timeout=1) == -9  # the old stage, killed
        server.send(json.dumps({"op": "started", "id": 1, "pid": 4242}).encode())  # answer to the next spawn
        assert fs.spawn("edgecount.stages:whatever", []) == 4242
        assert server.recv(65536)  # the request went out
        assert fs.exitcode(4242) is None  # the new stage runs
        server.send(json.dumps({"op": "exited", "pid": 4242, "code": 0}).encode())
        assert fs.exitcode(4242, timeout=1) == 0
    finally:
        fs._sock = None
        ours.close()
        server.close()
