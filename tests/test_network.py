"""Local ranks never reach past loopback (#22.2): they meet at a file store, gloo keeps to the
loopback interface, and nothing is looked up. Proved by a connect() audit under strace, and by
runs in a network namespace of their own (loopback down: one clear error row; loopback alone
up: the run works)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archprobe.runtime import distributed as rd
from archprobe.runtime.launch import RankFailure

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "archprobe", "throughput", "lenet", "--device", "cpu", "--nproc", "2", "-b", "2",
       "--threads", "1", "--mode", "train", "--warmup", "1", "--warmup-time", "0", "--min-iters", "3",
       "--min-time", "0.02", "--no-utilisation", "--quiet", "--timeout", "20", "-f", "json"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in (*rd.LAUNCH_VARIABLES, *rd.INTERFACE_VARIABLES):
        env.pop(name, None)
    return env


def test_local_ranks_meet_at_a_file_store_on_loopback(monkeypatch):
    for name in rd.INTERFACE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    envs = rd.local_rank_environments(2, "/tmp/x/store", "run-1")
    assert sorted(envs) == [0, 1]
    for rank, env in envs.items():
        assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"]) == (str(rank), str(rank),
                                                                                               "2", "2")
        assert env[rd.FILE_STORE_VARIABLE] == "/tmp/x/store" and not set(rd.TCP_STORE_VARIABLES) & set(env)
        assert env["GLOO_SOCKET_IFNAME"] == rd.loopback_interface() == "lo"  # Linux's loopback
        info = rd.RankInfo.from_env(env)  # no MASTER_ADDR/PORT needed with a file store
        assert (info.rank, info.world_size, info.local_world_size, info.nnodes) == (rank, 2, 2, 1)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")  # the user's choice is kept
    assert "GLOO_SOCKET_IFNAME" not in rd.local_rank_environments(1, "s", "r")[0]


def test_no_usable_loopback_is_one_line_before_any_rank_starts(monkeypatch):
    assert rd.loopback_problem() is None  # this machine's loopback works

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr("socket.create_connection", unreachable)
    problem = rd.loopback_problem()
    assert problem == ("the loopback interface is not usable (Network is unreachable): local ranks talk over "
                       "127.0.0.1; bring lo up (ip link set lo up)")
    from archprobe.runtime import launch

    monkeypatch.setattr("torch.distributed.elastic.multiprocessing.start_processes",
                        lambda **kw: pytest.fail("a rank started"))
    with pytest.raises(RankFailure) as exc:
        launch.launch_local(print, None, 2)
    assert str(exc.value) == problem and exc.value.rank is None


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_two_rank_run_connects_to_loopback_only_and_looks_up_nothing(tmp_path):
    log = tmp_path / "connect.log"
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,open,openat", "-o", str(log),
                           *RUN],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "ptrace" in done.stderr.lower():  # e.g. a container without CAP_SYS_PTRACE
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["status"] == "ok", row["error"]  # the ranks did talk
    trace = log.read_text(errors="replace")
    v4 = re.findall(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)', trace)
    v6 = re.findall(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"', trace)
    assert v4 or v6, "no inet connect traced: the audit saw nothing"
    outside = [(addr, port) for port, addr in v4 + v6 if addr not in LOOPBACK]
    assert outside == [], outside  # nothing leaves loopback
    assert [port for port, _ in v4 + v6 if port == "53"] == []  # no DNS query, not even to a local resolver
    # a host name lookup reads the resolver's files, even one /etc/hosts answers (a user lookup
    # through nscd, for a cache directory, reads /etc/passwd instead and is no network matter)
    resolver = re.findall(r'open(?:at)?\([^"]*"(/etc/(?:hosts|resolv\.conf|host\.conf|gai\.conf))"', trace)
    assert resolver == [], resolver
    assert not [p for p in re.findall(r'sun_path="([^"]+)"', trace) if "resolve" in p]  # nor systemd-resolved


def _unshare(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-rn", "sh", "-c", script], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rn (user and network namespaces) and ip")
def test_ranks_need_nothing_but_loopback_and_say_so_without_it():
    import shlex

    command = " ".join(map(shlex.quote, RUN))
    alone = _unshare(f"ip link set lo up && exec {command}")  # a namespace with loopback and nothing else
    assert alone.returncode == 0, alone.stderr
    assert [r["status"] for r in json.loads(alone.stdout)] == ["ok"], alone.stdout
    down = _unshare(f"exec {command}")  # loopback down: a clear error row, no C++ frames, no wait
    assert down.returncode == 0, down.stderr
    (row,) = json.loads(down.stdout)
    assert row["status"] == "error" and row["error"].startswith("the loopback interface is not usable"), row
    assert "Traceback" not in down.stderr and "frame" not in down.stderr
