"""The machine description: CPU features, oneDNN's ISA cap, precisions, `densenet info`."""
import json

import pytest

from densenet.system import machine

from helpers import cli

XEON_AMX = {'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'amx_tile',
            'amx_int8', 'amx_bf16'}
EPYC_AVX512 = {'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16'}
EPYC_AVX2 = {'avx2', 'fma'}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given flags (and no DNNL_MAX_CPU_ISA unless set)."""
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)

    def use(flags, cap=None):
        monkeypatch.setattr(machine, 'cpuinfo', lambda: ('test CPU', set(flags)))
        if cap:
            monkeypatch.setenv('DNNL_MAX_CPU_ISA', cap)
    return use


def test_the_three_kinds(cpu):
    cpu(EPYC_AVX2)
    caps = machine.capabilities()
    assert caps == {'avx2': True, 'avx512': False, 'vnni': False, 'bf16': False, 'amx': False}
    assert machine.precisions(caps) == {'fp32': 'AVX2', 'int8': 'AVX2 without VNNI',
                                        'bf16': None}
    assert 'no bfloat16 instructions' in machine.unsupported('bf16', caps)
    assert machine.unsupported('int8', caps) is None
    cpu(EPYC_AVX512)
    caps = machine.capabilities()
    assert machine.precisions(caps) == {'fp32': 'AVX-512', 'int8': 'AVX-512 VNNI',
                                        'bf16': 'AVX512_BF16'}
    assert machine.unsupported('bf16', caps) is None
    cpu(XEON_AMX)
    # AMX needs the process's permission (runtime.enable_amx) as well as the flags.
    assert not machine.capabilities(amx_enabled=False)['amx']
    caps = machine.capabilities(amx_enabled=True)
    assert caps['amx'] and machine.precisions(caps)['int8'] == 'AMX'


def test_dnnl_max_cpu_isa_caps_what_onednn_may_use(cpu):
    cpu(XEON_AMX, cap='avx512_core')  # oneDNN reads the value case-insensitively
    caps = machine.capabilities(amx_enabled=True)
    assert caps == {'avx2': True, 'avx512': True, 'vnni': False, 'bf16': False, 'amx': False}
    assert 'DNNL_MAX_CPU_ISA=AVX512_CORE hides it' in machine.unsupported('bf16', caps)
    cpu(XEON_AMX, cap='AVX512_CORE_BF16')
    caps = machine.capabilities(amx_enabled=True)
    assert caps['bf16'] and caps['vnni'] and not caps['amx']
    cpu(EPYC_AVX2, cap='ALL')  # not a level: no cap
    assert machine.isa_cap() is None and machine.capabilities()['avx2']


def test_densenet_info_names_the_cpu_and_what_it_runs(monkeypatch):
    desc = json.loads(cli('info', '--json').stdout)
    assert desc['cpu'] == machine.cpuinfo()[0]
    assert set(desc['flags']) <= set(machine.FLAGS)
    assert set(desc['precisions']) == {'fp32', 'int8', 'bf16'}
    assert 'MKLDNN' in desc['mxnet_build'] and desc['mxnet'] == '1.9.1'
    for key in ('omp_num_threads', 'engine', 'gpus', 'cores'):
        assert key in desc
    text = cli('info').stdout
    assert text.splitlines()[0].startswith(desc['cpu'])
    # The description reads the cap from the environment when it is asked for.
    monkeypatch.setenv('DNNL_MAX_CPU_ISA', 'AVX2')
    capped = json.loads(cli('info', '--json').stdout)
    assert capped['dnnl_max_cpu_isa'] == 'AVX2'
    assert capped['precisions'] == {'fp32': 'AVX2', 'int8': 'AVX2 without VNNI', 'bf16': None}


def test_int8_keeps_relu_outputs_signed_where_there_is_no_vnni(cpu):
    """Without VNNI oneDNN sums uint8 x int8 products in saturating 16-bit pairs."""
    from densenet.deploy.inference import default_int8_dtype
    cpu(EPYC_AVX2)
    assert default_int8_dtype(machine.capabilities()) == 'int8'
    cpu(EPYC_AVX512)
    assert default_int8_dtype(machine.capabilities()) == 'auto'
    cpu(XEON_AMX, cap='AVX2')
    assert default_int8_dtype(machine.capabilities(amx_enabled=True)) == 'int8'
