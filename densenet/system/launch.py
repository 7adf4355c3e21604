"""Start a local MXNet parameter-server cluster: scheduler, servers and workers.

``densenet launch -n 2 -s 1 -- densenet train --kvstore dist_sync ...`` runs
the command as each of the `n` workers, with the ``DMLC_*`` variables that
MXNet's KVStore reads, on 127.0.0.1. Worker output is forwarded line by line
with a ``[worker i]`` prefix (i in launch order) until the worker announces
its kvstore rank, ``[worker rank r]`` after. Every process dies with the
launcher, even when it is killed with SIGKILL (Linux). When any process fails, or on Ctrl-C/SIGTERM,
every process of the cluster is stopped; the exit status is the first failure's.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from densenet.errors import UsageError
from densenet.system import runtime

# What a scheduler or server runs: importing mxnet with DMLC_ROLE set starts
# the parameter-server loop and exits when the workers are done.
PS_COMMAND = [sys.executable, '-c', 'import mxnet']

# Every role runs under this: it asks Linux to SIGKILL it when the launcher dies
# (PR_SET_PDEATHSIG = 1), even by SIGKILL, which no handler in the launcher can
# catch, then execs the role's command (the setting survives exec).
_DIE_WITH_PARENT = ('import ctypes, os, signal, sys\n'
                    'ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n'
                    'if os.getppid() != int(sys.argv[1]):\n'
                    '    sys.exit(137)  # the launcher died before prctl\n'
                    'os.execvp(sys.argv[2], sys.argv[2:])\n')

# A dist worker announces its kvstore rank (training.fit); its lines are labelled by it.
RANK_LINE = re.compile(r'^densenet: worker rank (\d+) of \d+')


def die_with_parent(command: list[str]) -> list[str]:
    """`command` wrapped so that it is killed when this process dies (Linux).

    Args:
        command: the command line.

    Returns:
        The wrapped command line.
    """
    if not sys.platform.startswith('linux'):
        return command
    return [sys.executable, '-c', _DIE_WITH_PARENT, str(os.getpid()), *command]


def reserve_port(host: str = '127.0.0.1') -> tuple[int, socket.socket]:
    """A free TCP port on `host` and the socket that holds it, until that socket is closed.

    A port found free and released at once may be taken in the second
    or two before the scheduler binds it (another process's bind, or the ephemeral
    port of a connection); the scheduler then exits with "bind failed" and the
    cluster with it. The holding socket is bound with SO_REUSEADDR and never
    listens: the scheduler (ZeroMQ binds with SO_REUSEADDR too) can still bind
    the port, and no other bind or outgoing connection is given it meanwhile.

    Args:
        host: the address.

    Returns:
        (the port, the socket that holds it).
    """
    with contextlib.ExitStack() as on_error:
        s = on_error.enter_context(socket.socket())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        on_error.pop_all()  # bound: the socket stays open for the caller
    return s.getsockname()[1], s


def multi_machine_help(num_workers: int, num_servers: int, command: Sequence[str]) -> str:
    """The command lines that run this cluster's roles by hand on several machines.

    Args:
        num_workers: the workers.
        num_servers: the servers.
        command: the worker command.

    Returns:
        The lines, as `densenet launch` prints them.
    """
    return (f'On several machines, start the same roles there with DMLC_PS_ROOT_URI set to '
            f'the scheduler machine\'s address and a shared DMLC_PS_ROOT_PORT:\n'
            f'  scheduler (once):  DMLC_ROLE=scheduler DMLC_NUM_WORKER={num_workers} '
            f'DMLC_NUM_SERVER={num_servers} python -c "import mxnet"\n'
            f'  each server:       DMLC_ROLE=server ... python -c "import mxnet"\n'
            f'  each worker:       DMLC_ROLE=worker ... {" ".join(command)}')


class Cluster:
    """The processes of one local cluster, each in its own process group.

    Args:
        command: the worker command.
        num_workers: the workers.
        num_servers: the servers.
        port: the scheduler's port (default: a free one).
        stream: where the prefixed worker output goes.
    """
    _port_holder: socket.socket | None = None  # holds the scheduler's port (reserve_port)

    def __init__(self, command: list[str], num_workers: int, num_servers: int,
                 port: int | None = None, stream: IO[str] = sys.stdout) -> None:
        self.command, self.stream = command, stream
        self.num_workers, self.num_servers = num_workers, num_servers
        if not port:
            port, self._port_holder = reserve_port()  # held until the cluster stops
        self.env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(port),
                        DMLC_NUM_WORKER=str(num_workers), DMLC_NUM_SERVER=str(num_servers),
                        PS_VERBOSE='0')
        if not runtime.settings.user_set:
            # Workers on one machine share its cores: each gets its share of them, as
            # one OpenMP pool of all the cores per worker oversubscribes them.
            share = str(max(1, runtime.available_cores() // num_workers))
            self.env['OMP_NUM_THREADS'] = self.env['MXNET_OMP_MAX_THREADS'] = share
        if (engine := self.env.get('MXNET_ENGINE_TYPE')) is None:
            # Under the threaded engine a 2-worker dist_sync run on loopback hung on rank 0
            # after its first epoch (CPU build, cause not found); the NaiveEngine runs it.
            runtime.use_naive_engine(self.env)
        elif engine != 'NaiveEngine':
            print(f'densenet launch: warning: MXNET_ENGINE_TYPE={engine}; 2-worker dist_sync '
                  'runs hung under the threaded engine in our tests. Unset it to use the '
                  'NaiveEngine.', file=stream, flush=True)
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []
        self.lock = threading.Lock()

    def _start(self, role: str, index: int | None = None) -> None:
        """Start one role; a worker runs the command, its output forwarded with its label."""
        worker = role == 'worker'
        label = role if index is None else f'{role} {index}'
        env = dict(self.env, DMLC_ROLE=role)
        if worker:
            env['DENSENET_WORKER_INDEX'] = str(index)
        proc = subprocess.Popen(die_with_parent(self.command if worker else PS_COMMAND),
                                env=env, start_new_session=True, text=True, bufsize=1,
                                stdout=subprocess.PIPE if worker else subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        self.procs.append((label, proc))
        if worker:
            threading.Thread(target=self._forward, args=(label, proc), daemon=True).start()

    def _forward(self, label: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None  # started with stdout=PIPE
        for line in proc.stdout:
            if rank := RANK_LINE.match(line):  # the scheduler's rank, not the launch order
                label = f'worker rank {rank.group(1)}'
            for part in filter(None, line.rstrip('\n').split('\r')):
                with self.lock:
                    print(f'[{label}] {part}', file=self.stream, flush=True)

    def start(self) -> None:
        """Start the scheduler, the servers and the workers."""
        self._start('scheduler')
        for role, count in (('server', self.num_servers), ('worker', self.num_workers)):
            for i in range(count):
                self._start(role, i)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every process group, then SIGKILL what is left after `grace` s.

        Args:
            grace: the seconds between the two.
        """
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + grace
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.time()))
        for _, proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.release_port()

    def release_port(self) -> None:
        """Close the socket that holds the scheduler's port (see reserve_port)."""
        if self._port_holder is not None:
            self._port_holder.close()  # closing it again does nothing

    def __del__(self) -> None:
        self.release_port()

    def wait(self, poll: float = 0.2) -> int:
        """Wait for the workers; stop everything when one fails.

        Args:
            poll: seconds between checks.

        Returns:
            0 when every worker succeeded; else the first failure's status.
        """
        workers = [(label, p) for label, p in self.procs if label.startswith('worker')]
        while True:
            for label, proc in self.procs:
                if (code := proc.poll()) not in (None, 0):
                    print(f'densenet launch: {label} exited with status {code}; stopping the '
                          'cluster', file=self.stream, flush=True)
                    self.stop()
                    return code if code > 0 else 128 - code
            if all(p.poll() == 0 for _, p in workers):
                self.stop(grace=10.0)  # scheduler and servers end on their own
                return 0
            time.sleep(poll)


def launch(command: list[str], num_workers: int, num_servers: int,
           stream: IO[str] = sys.stdout) -> int:
    """Run `command` as `num_workers` workers of a local cluster.

    Args:
        command: the worker command, e.g. ``densenet train --kvstore dist_sync ...``.
        num_workers: the workers.
        num_servers: the servers.
        stream: where the prefixed worker output goes.

    Returns:
        The exit status: 0 when every worker succeeded; 130 after Ctrl-C or SIGTERM,
        once every process was stopped.

    Raises:
        UsageError: no worker or no server, or no command.
    """
    if num_workers < 1 or num_servers < 1:
        raise UsageError('a cluster needs at least one worker (-n) and one server (-s)')
    if not command:
        raise UsageError('no command to launch: densenet launch -n 2 -s 1 -- densenet train ...')
    cluster = Cluster(command, num_workers, num_servers, stream=stream)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # KeyboardInterrupt
    try:
        cluster.start()
        return cluster.wait()
    except KeyboardInterrupt:
        stream.write('densenet launch: interrupted; stopping the cluster\n')
        cluster.stop()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
