"""What `import densenet` changes in the process, and the way to opt out."""
import json
import os
import subprocess
import sys

import pytest

from densenet.system import runtime

from helpers import all_cores, session_cores

# Each check starts new interpreters: what `import densenet` does happens once per process.
pytestmark = pytest.mark.slow

# Variables the package may set; removed from the children's environment first.
SET_BY_IMPORT = (*runtime.THREAD_VARS, 'MXNET_ENGINE_TYPE', 'DENSENET_ENGINE',
                 'DNNL_MAX_CPU_ISA', 'DENSENET_RUNTIME')

CHANGED = ('import json, os; before = dict(os.environ); import densenet; '
           'print(json.dumps(sorted(k for k in set(before) | set(os.environ) '
           'if before.get(k) != os.environ.get(k))))')


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in SET_BY_IMPORT}
    return dict(env, **extra)


def test_import_changes_are_listed_and_the_opt_out_leaves_the_environment_alone():
    changed = json.loads(subprocess.run([sys.executable, '-c', CHANGED], env=_env(),
                                        capture_output=True, text=True, check=True).stdout)
    assert 'OMP_NUM_THREADS' in changed and 'MXNET_ENGINE_TYPE' in changed
    assert set(changed) <= set(SET_BY_IMPORT)
    off = subprocess.run([sys.executable, '-c', CHANGED], env=_env(DENSENET_RUNTIME='off'),
                         capture_output=True, text=True, check=True)
    assert json.loads(off.stdout) == []
    info = subprocess.run([sys.executable, '-m', 'densenet', 'info', '--json'],
                          env=_env(DENSENET_RUNTIME='off'), capture_output=True, text=True,
                          check=True)
    desc = json.loads(info.stdout)
    assert desc['import_changes'] == ['none: DENSENET_RUNTIME=off']
    assert desc['engine'] == 'ThreadedEnginePerDevice'
    # Without the NaiveEngine the memory-efficient mode says what it needs.
    code = ('import densenet\n'
            'try:\n'
            '    densenet.set_memory_efficient(densenet.DenseNet())\n'
            'except RuntimeError as e:\n'
            '    print(e)\n')
    me = subprocess.run([sys.executable, '-c', code], env=_env(DENSENET_RUNTIME='off'),
                        capture_output=True, text=True, check=True)
    assert 'MXNET_ENGINE_TYPE=NaiveEngine' in me.stdout


def test_threads_set_before_mxnet_and_warned_when_too_late(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in runtime.THREAD_VARS}
    # The children run on every core of the session (not an xdist worker's share).
    first = subprocess.run([sys.executable, '-c', 'import densenet, os; '
                            'print(os.environ["OMP_NUM_THREADS"])'], preexec_fn=all_cores,
                           env=env, capture_output=True, text=True, check=True)
    cores = len(session_cores())
    assert first.stdout.strip() == str(cores)
    late = subprocess.run([sys.executable, '-W', 'always', '-c',
                           'import mxnet, densenet; densenet.runtime.check_threads()'],
                          preexec_fn=all_cores, env=env, capture_output=True, text=True,
                          check=True)
    if cores > 1:
        assert 'mxnet was imported before densenet' in late.stderr
    user = subprocess.run([sys.executable, '-c', 'import densenet, os; '
                           'print(os.environ["OMP_NUM_THREADS"], '
                           'densenet.runtime.describe()["threads"])'],
                          env=dict(env, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, check=True)
    assert user.stdout.split() == ['1', 'set', 'by', 'user']
