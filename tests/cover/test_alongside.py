"""Work done in a forked child alongside: it happens, it is waited for, its failure
raises here, and nothing is left running."""

import os

import pytest

from mwsim.internal import alongside as mod
from mwsim.internal.alongside import alongside


def write_pid(path):
    return lambda: path.write_text(str(os.getpid()))


def test_the_work_runs_in_a_child_while_the_body_runs_here(tmp_path, monkeypatch):
    monkeypatch.setattr(mod, "can_fork", lambda: True)
    out = tmp_path / "pid"
    with alongside(write_pid(out)):
        here = os.getpid()
    assert out.read_text() != str(here)  # written by another process, done on leaving


def test_without_a_safe_fork_the_work_runs_here(tmp_path, monkeypatch):
    monkeypatch.setattr(mod, "can_fork", lambda: False)
    out = tmp_path / "pid"
    with alongside(write_pid(out)):
        assert not out.exists()
    assert out.read_text() == str(os.getpid())


def test_a_failing_child_is_redone_here_so_its_error_raises_here(monkeypatch):
    monkeypatch.setattr(mod, "can_fork", lambda: True)

    def boom():
        raise RuntimeError("cannot write the trace")

    with pytest.raises(RuntimeError, match="cannot write the trace"), alongside(boom):
        pass


def test_an_exception_in_the_body_kills_and_reaps_the_child(monkeypatch):
    monkeypatch.setattr(mod, "can_fork", lambda: True)
    pids = []
    real_fork = mod._fork

    def fork(work):
        pid = real_fork(work)
        pids.append(pid)
        return pid

    monkeypatch.setattr(mod, "_fork", fork)

    def forever():
        while True:
            pass

    with pytest.raises(KeyboardInterrupt), alongside(forever):
        raise KeyboardInterrupt
    (pid,) = pids
    with pytest.raises(ChildProcessError):  # reaped already: no such child
        os.waitpid(pid, os.WNOHANG)


def test_it_forks_only_with_one_thread_and_two_cpus():
    import threading

    assert mod.can_fork() == (threading.active_count() == 1 and (len(os.sched_getaffinity(0)) > 1))


def test_small_work_is_done_here(tmp_path, monkeypatch):
    monkeypatch.setattr(mod, "can_fork", lambda: True)
    out = tmp_path / "pid"
    with alongside(write_pid(out), size=mod.WORTH_FORKING - 1):
        pass
    assert out.read_text() == str(os.getpid())
