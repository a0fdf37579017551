"""Processes of the chaos lab: started in a network namespace, logged to a file, stopped by pid.

Every process runs in its own session (setsid), so its process group holds its children too
(Celery's prefork pool): cleanup signals the group of each process the suite started, never
anything else.
"""
import ctypes
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor


class Failure(Exception):
    """A check of the suite failed; the message says what, and which logs to read."""

    def __init__(self, message, logs=()):
        super().__init__(message)
        self.logs = list(logs)


class Proc:
    """One started process: its name, pid, log file, and when and how it ended."""

    def __init__(self, name, popen, log):
        self.name, self.popen, self.log = name, popen, log
        self.pid = popen.pid
        self.started = time.time()
        self.ended = None

    def alive(self):
        if self.popen.poll() is None:
            return True
        if self.ended is None:
            self.ended = time.time()
        return False

    @property
    def returncode(self):
        return self.popen.poll()

    def send(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Wait for the exit; True when it exited within `timeout` seconds."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self.alive()
        return True

    def stop(self, sig=signal.SIGTERM, grace=15.0):
        """Signal, wait up to `grace`, then SIGKILL the group. Returns seconds to exit."""
        t0 = time.time()
        if not self.alive():
            return 0.0
        self.send(sig)
        if not self.wait(grace):
            self.kill_group()
            self.wait(5)
        return time.time() - t0

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, lines=30):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return f"(cannot read {self.log}: {e})"


class Supervisor:
    """Starts processes, remembers them, and stops all that are left on cleanup."""

    def __init__(self, state):
        self.state = state
        self.procs = []

    def start(self, name, ns, argv, log=None, env=None):
        log = log or os.path.join(self.state, f"{name}.log")
        cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
        with open(log, "ab") as out:
            popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=env)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def cleanup(self):
        """SIGTERM every live process group, give them 10 s, SIGKILL what is left."""
        live = [p for p in self.procs if p.alive()]
        for p in live:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + 10
        for p in live:
            if not p.wait(max(0.1, deadline - time.time())):
                p.kill_group()
        for p in live:
            p.kill_group()  # children left behind by a parent that exited
            p.wait(2)


def wait_until(what, check, timeout, proc=None, interval=0.1):
    """Poll `check()` until it is true; fail when `proc` exits first or after `timeout` s."""
    deadline = time.time() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # a probe that cannot connect yet is just "not yet"
            pass
        if proc is not None and not proc.alive():
            raise Failure(f"{proc.name} exited (status {proc.returncode}) before {what}",
                          [proc.log])
        if time.time() > deadline:
            raise Failure(f"no {what} after {timeout:.0f} s", [proc.log] if proc else [])
        time.sleep(interval)


def run(argv, ns=None, timeout=60, check=True, env=None, stdin=None):
    """Run a command to completion (in `ns` when given); returns CompletedProcess."""
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          input=stdin)
    if check and done.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited {done.returncode}: "
                      f"{(done.stderr or done.stdout).strip()[-600:]}")
    return done


CLONE_NEWNET = 0x40000000


def netns_executor(ns):
    """A one-thread executor whose thread lives in network namespace `ns` (setns(2) changes
    only the calling thread), for cheap HTTP probes of admin ports inside the namespaces."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter():
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns}")
        finally:
            os.close(fd)

    return ThreadPoolExecutor(max_workers=1, initializer=enter, thread_name_prefix=ns)
