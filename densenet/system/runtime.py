"""Process-level settings that MXNet reads once, when it is first imported.

``import densenet`` calls `configure`, which makes these changes and no others,
each only where the user has not chosen, and each because it must happen
before ``import mxnet``:

1. ``OMP_NUM_THREADS`` = the cores this process may use (MXNet sizes its
   OpenMP pool from half the CPU count: 1.7x slower on 2 cores);
2. ``MXNET_ENGINE_TYPE=NaiveEngine`` (and ``DENSENET_ENGINE=1``) on CPU-only
   MXNet builds: nothing to overlap on a CPU, and the memory-efficient mode's
   nested backward needs it;
3. on CPUs with AMX: Linux's per-process AMX permission (``arch_prctl``) and
   ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`` (oneDNN 2.4 neither asks nor uses
   AMX by default);
4. it then creates MXNet's engine with stderr muted, so that the NaiveEngine's
   start-up message does not follow every command's output.

``DENSENET_RUNTIME=off`` skips all four (MXNet's defaults then apply; the
memory-efficient mode asks for the NaiveEngine). `changes()` lists what was
done; `densenet info` prints it. `check_threads` warns when mxnet was
imported first.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from densenet.errors import UsageError
from densenet.system.machine import Machine, RuntimeSettings, cpu_has
from densenet.system.machine import capabilities as _capabilities
from densenet.system.machine import describe as describe_machine

if TYPE_CHECKING:
    import mxnet as mx

THREAD_VARS = ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS')


@dataclasses.dataclass
class Settings:
    """What `configure` did in this process (read by `changes` and the launcher)."""

    opted_out: bool = False        # DENSENET_RUNTIME=off
    set_by_us: bool = False        # the OpenMP thread counts
    user_set: bool = False         # the user set a thread count before the import
    too_late: bool = False         # mxnet was imported first
    engine_set_by_us: bool = False
    engine_started: bool = False
    amx: bool = False


settings = Settings()


def available_cores() -> int:
    """CPU cores this process may run on (affinity and cgroup CPU sets respected).

    Returns:
        The count.
    """
    if hasattr(os, 'sched_getaffinity'):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure() -> None:
    """Make the settings above, unless DENSENET_RUNTIME=off; see `changes()`."""
    if os.environ.get('DENSENET_RUNTIME', '').strip().lower() in ('off', '0', 'false', 'no'):
        settings.opted_out = True
        return
    configure_threads()
    configure_engine()
    enable_amx()
    start_engine_quietly()


def changes() -> list[str]:
    """What `configure` changed in this process, one line each.

    Returns:
        The lines (empty when nothing was changed).
    """
    if settings.opted_out:
        return ['none: DENSENET_RUNTIME=off']
    done = ((settings.set_by_us, f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")} (MXNet '
                                 'would use half the cores)'),
            (settings.engine_set_by_us, 'MXNET_ENGINE_TYPE=NaiveEngine (CPU-only MXNet build)'),
            (settings.amx, 'AMX permission requested, DNNL_MAX_CPU_ISA=AVX512_CORE_AMX'),
            (settings.engine_started, 'MXNet engine started with its start-up message muted'))
    return [line for changed, line in done if changed]


def configure_threads() -> None:
    """Give MXNet's OpenMP pool every available core, unless the user set a count."""
    settings.user_set = any(v in os.environ for v in THREAD_VARS) and not settings.set_by_us
    settings.too_late = not settings.user_set and 'mxnet' in sys.modules
    if not (settings.user_set or settings.too_late):
        os.environ['OMP_NUM_THREADS'] = str(available_cores())
        settings.set_by_us = True


def configure_engine() -> None:
    """Use MXNet's synchronous NaiveEngine on CPU-only builds, unless the user chose one.

    On a CPU the threaded engine has nothing to overlap, and the NaiveEngine is
    what makes the memory-efficient dense blocks (a Python autograd.Function
    that runs a nested backward) deterministic: under the threaded engine that
    nested backward raced and sometimes hung. GPU builds keep the threaded
    engine; memory_efficient then asks for MXNET_ENGINE_TYPE=NaiveEngine.
    """
    if 'mxnet' in sys.modules:
        return
    if 'MXNET_ENGINE_TYPE' in os.environ:
        # Inherited from a parent process where densenet chose it: still ours.
        settings.engine_set_by_us = os.environ.get('DENSENET_ENGINE') == '1'
        return
    from importlib import metadata
    names = {(d.metadata['Name'] or '').lower() for d in metadata.distributions()}
    if 'mxnet' in names and not any(n.startswith('mxnet-cu') for n in names):  # a CPU build
        use_naive_engine(os.environ)
        settings.engine_set_by_us = True


def use_naive_engine(env: MutableMapping[str, str]) -> None:
    """Set `env` to the NaiveEngine, marked as densenet's choice.

    Args:
        env: os.environ, or a child process's environment.
    """
    env['MXNET_ENGINE_TYPE'], env['DENSENET_ENGINE'] = 'NaiveEngine', '1'


def start_engine_quietly() -> None:
    """Create MXNet's engine now, with stderr muted: a NaiveEngine announces itself
    on stderr ("MXNet start using engine"), which would follow every command's output."""
    if not settings.engine_set_by_us:
        return
    import mxnet as mx
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        mx.nd.waitall()
        settings.engine_started = True
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def naive_engine() -> bool:
    """Whether this process runs MXNet's NaiveEngine.

    Returns:
        True when ``MXNET_ENGINE_TYPE`` is ``NaiveEngine``.
    """
    return os.environ.get('MXNET_ENGINE_TYPE') == 'NaiveEngine'


def check_threads() -> None:
    """Warn once if MXNet was imported before its thread count could be set."""
    if settings.too_late and available_cores() > 1:
        warnings.warn(
            'mxnet was imported before densenet, so MXNet uses only half of the '
            f'{available_cores()} cores for its operators (about 1.7x slower on 2 cores). '
            f'Import densenet first, or start Python with OMP_NUM_THREADS={available_cores()}.',
            RuntimeWarning, stacklevel=2)
        settings.too_late = False


def enable_amx() -> bool:
    """Let oneDNN use AMX tiles where the CPU has them.

    Linux grants AMX state per process only on request (arch_prctl
    ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA), and the oneDNN 2.4 in MXNet
    1.9.1 does not ask, dying with SIGILL instead; it also needs
    ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX``. Both must happen before mxnet loads.

    Returns:
        Whether AMX is enabled.
    """
    if not cpu_has('amx_tile') or 'mxnet' in sys.modules:
        return False
    import ctypes
    ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA, SYS_arch_prctl = 0x1023, 18, 158
    libc = ctypes.CDLL(None, use_errno=True)
    settings.amx = libc.syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0
    if settings.amx:
        os.environ.setdefault('DNNL_MAX_CPU_ISA', 'AVX512_CORE_AMX')
    return settings.amx


def describe() -> RuntimeSettings:
    """Which thread, engine and AMX settings are in effect, for logs and summary.json.

    Returns:
        {setting: value}.
    """
    how = 'set by user' if settings.user_set else (
        'set by densenet' if settings.set_by_us else 'MXNet default (half the cores)')
    return {'cores': available_cores(), 'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
            'threads': how,
            'engine': os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice'),
            'amx_permission': settings.amx, 'import_changes': changes()}


def capabilities() -> dict[str, bool]:
    """What oneDNN may use in this process (`machine.capabilities`, AMX permission applied).

    Returns:
        {feature: bool}.
    """
    return _capabilities(settings.amx)


def machine() -> Machine:
    """The full machine description (`densenet info`, summary.json, the benchmark).

    Returns:
        The description dict (`machine.describe`).
    """
    return describe_machine(describe())


def devices(device: str | None = None) -> list[mx.Context]:
    """The MXNet contexts a device flag names.

    Args:
        device: 'auto' (every GPU, else the CPU; also for None), 'cpu', 'gpu' or
            'gpu:0,1'.

    Returns:
        The contexts.

    Raises:
        UsageError: a bad device name, or a GPU that MXNet does not see.
    """
    import mxnet as mx

    device = (device or 'auto').strip().lower()
    if device in ('auto', 'cpu'):
        n = mx.context.num_gpus() if device == 'auto' else 0
        return [mx.gpu(i) for i in range(n)] or [mx.cpu()]
    device = 'gpu:0' if device == 'gpu' else device
    ids = [i.strip() for i in device.removeprefix('gpu:').split(',') if i.strip()]
    if not device.startswith('gpu:') or not ids or not all(i.isdecimal() for i in ids):
        raise UsageError(f'bad device {device!r}: use auto, cpu, gpu, gpu:0 or gpu:0,1')
    n = mx.context.num_gpus()
    if missing := [int(i) for i in ids if int(i) >= n]:
        raise UsageError(f'device {device!r}: MXNet sees {n} GPU(s), no GPU {missing}; '
                         'use --device cpu or a CUDA build of mxnet')
    return [mx.gpu(int(i)) for i in ids]
