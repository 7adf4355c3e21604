"""What this machine can run: CPU features, the ISA oneDNN may use, precisions.

Three kinds of 2-core machine have run this project (AVX2-only, AVX-512 with
VNNI and bf16, AVX-512 with AMX), and what a precision costs or whether it
runs at all depends on the kind, so every figure the tools write carries this
description. oneDNN picks its kernels from the CPU's flags, capped by
``DNNL_MAX_CPU_ISA``; the capabilities below apply the same cap, so that
``DNNL_MAX_CPU_ISA=AVX2`` makes any machine behave (and describe itself) as
an AVX2-only one. Nothing here imports mxnet at module level: ``runtime``
uses it before mxnet loads.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
from typing import TypedDict

#: The CPU flags (as /proc/cpuinfo names them) that decide oneDNN's kernels.
FLAGS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16',
         'amx_tile', 'amx_int8', 'amx_bf16')

#: oneDNN 2.4's DNNL_MAX_CPU_ISA values, lowest first.
ISA_LEVELS = ('SSE41', 'AVX', 'AVX2', 'AVX512_MIC', 'AVX512_MIC_4OPS', 'AVX512_CORE',
              'AVX512_CORE_VNNI', 'AVX512_CORE_BF16', 'AVX512_CORE_AMX')

@functools.cache
def cpuinfo() -> tuple[str, set[str]]:
    """The first CPU's model name and flags, from /proc/cpuinfo (read once).

    Returns:
        (model name, set of flags); where there is no /proc/cpuinfo, (Python's name for
        the processor or the machine, set()).
    """
    first = ''
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        first = f.read().split('\n\n')[0]  # one block per CPU
    fields = {key.strip(): value.strip()
              for key, _, value in (line.partition(':') for line in first.splitlines())}
    name = fields.get('model name') or platform.processor() or platform.machine()
    return name, set(fields.get('flags', '').split())


def cpu_has(flag: str) -> bool:
    """Whether the CPU lists feature `flag` (False where it cannot tell).

    Args:
        flag: a /proc/cpuinfo flag, e.g. 'avx512_vnni'.

    Returns:
        Whether it is listed.
    """
    return flag in cpuinfo()[1]


def isa_cap() -> str | None:
    """The DNNL_MAX_CPU_ISA level in force.

    Returns:
        The level, upper-case, or None for no cap.
    """
    value = os.environ.get('DNNL_MAX_CPU_ISA', '').strip().upper()
    return value if value in ISA_LEVELS else None


def _allowed(level: str) -> bool:
    cap = isa_cap()
    return cap is None or ISA_LEVELS.index(cap) >= ISA_LEVELS.index(level)


def capabilities(amx_enabled: bool = False) -> dict[str, bool]:
    """What oneDNN may use here: the CPU has the feature and the ISA cap allows it.

    AMX also needs the process's permission, which `runtime.enable_amx` asks for;
    without it oneDNN 2.4 does not use the tiles.

    Args:
        amx_enabled: the process has AMX permission.

    Returns:
        {feature: bool}.
    """
    avx512 = cpu_has('avx512f') and cpu_has('avx512bw') and _allowed('AVX512_CORE')
    amx = amx_enabled and cpu_has('amx_tile') and _allowed('AVX512_CORE_AMX')
    return {
        'avx2': cpu_has('avx2') and _allowed('AVX2'),
        'avx512': avx512,
        'vnni': avx512 and cpu_has('avx512_vnni') and _allowed('AVX512_CORE_VNNI'),
        'bf16': (avx512 and cpu_has('avx512_bf16') and _allowed('AVX512_CORE_BF16'))
        or (amx and cpu_has('amx_bf16')),
        'amx': amx and cpu_has('amx_int8'),
    }


def precisions(caps: dict[str, bool]) -> dict[str, str | None]:
    """How this machine runs each precision.

    Args:
        caps: `capabilities()`.

    Returns:
        {precision: how it runs (e.g. 'AVX-512 VNNI'), or None where it cannot}.
    """
    vector = 'AVX-512' if caps['avx512'] else 'AVX2' if caps['avx2'] else 'SSE'
    # without VNNI, u8 x s8 products go through saturating 16-bit sums (vpmaddubsw)
    int8 = 'AMX' if caps['amx'] else 'AVX-512 VNNI' if caps['vnni'] else f'{vector} without VNNI'
    bf16 = ('AMX' if caps['amx'] else 'AVX512_BF16') if caps['bf16'] else None
    return {'fp32': vector, 'int8': int8, 'bf16': bf16}


class RuntimeSettings(TypedDict, total=False):
    """The thread, engine and AMX settings in effect (`runtime.describe`)."""

    cores: int
    omp_num_threads: str | None
    threads: str
    engine: str
    amx_permission: bool
    import_changes: list[str]


class Machine(RuntimeSettings, total=False):
    """The machine as the tools record it (`describe`); the settings may be absent."""

    cpu: str
    flags: list[str]
    dnnl_max_cpu_isa: str | None
    capabilities: dict[str, bool]
    precisions: dict[str, str | None]
    mxnet: str
    mxnet_build: list[str]
    python: str
    platform: str
    gpus: int


def describe(settings: RuntimeSettings | None = None) -> Machine:
    """The machine as the tools record it: CPU, ISA, precisions, MXNet build, threads.

    Args:
        settings: `runtime.describe()` (threads, engine, AMX permission); mxnet is
            imported here.

    Returns:
        The description dict.
    """
    import mxnet as mx
    name, flags = cpuinfo()
    caps = capabilities(bool(settings and settings.get('amx_permission')))
    build = sorted(k for k in ('MKLDNN', 'CUDA', 'CUDNN', 'NCCL', 'OPENMP', 'DIST_KVSTORE')
                   if mx.runtime.Features().is_enabled(k))
    return {'cpu': name, 'flags': [f for f in FLAGS if f in flags],
            'dnnl_max_cpu_isa': isa_cap(), 'capabilities': caps,
            'precisions': precisions(caps), 'mxnet': mx.__version__,
            'mxnet_build': build, 'python': platform.python_version(),
            'platform': platform.platform(), **(settings or {}),
            'gpus': mx.context.num_gpus()}


#: The channel multiple the CPU fast paths align to: 8 floats, an AVX2 vector register and
#: half an AVX-512 one. oneDNN runs a convolution or a depthwise convolution whose channel
#: count is not a multiple of it in the plain layout (im2col + GEMM), several times slower.
CHANNEL_BLOCK = 8


def unsupported(precision: str, caps: dict[str, bool]) -> str | None:
    """Why this machine cannot run `precision`.

    Args:
        precision: 'fp32', 'bf16' or 'int8'.
        caps: `capabilities()` (`runtime.capabilities()` in this process).

    Returns:
        A sentence with the fix, or None when it can.
    """
    if precision == 'bf16' and not caps['bf16']:
        capped = (f' (DNNL_MAX_CPU_ISA={isa_cap()} hides it)'
                  if cpu_has('avx512_bf16') or cpu_has('amx_bf16') else '')
        return (f'this CPU has no bfloat16 instructions (avx512_bf16 or AMX){capped}; '
                'use fp32 or int8')
    return None


def summary_line(desc: Machine) -> str:
    """One line naming the machine, for logs and table headers.

    Args:
        desc: a `describe` dict.

    Returns:
        The line.
    """
    caps = ', '.join(k for k, v in desc['capabilities'].items() if v) or 'no AVX2'
    cap = f', DNNL_MAX_CPU_ISA={desc["dnnl_max_cpu_isa"]}' if desc['dnnl_max_cpu_isa'] else ''
    return (f'{desc["cpu"]} [{caps}{cap}], {desc.get("cores", os.cpu_count())} cores, '
            f'{desc.get("omp_num_threads") or "default"} OpenMP threads, '
            f'{desc["gpus"]} GPU(s)')
