"""An option is its extension's: one defined and registered in this file alone is parsed,
checked, documented, run, written and checkpointed like the package's own."""
import json
import os

import pytest

from densenet.train import TrainConfig
from densenet.train.extensions import register, run_folder_files
from densenet.train.extensions.base import REGISTRY, Extension, State
from densenet.train.options import EXTENSION_OPTIONS, option, reference_rows

from helpers import cli, read_metrics


class CountSteps(Extension):
    """--count-steps N: counts the optimizer steps, writes the count to steps.txt every
    epoch, adds it to the epoch's row and keeps it in the checkpoint."""
    name = 'count_steps'
    options = {'count_steps': option(
        0, group='evaluation', parse=int, metavar='N', check=lambda v: 0 <= v <= 10,
        error='{flag} must be between 0 and 10, got {value}',
        help='count the optimizer steps (the test extension; 0: off)')}
    files = ('steps.txt',)
    made = []

    def __init__(self):
        self.steps = 0
        self.made.append(self)

    @classmethod
    def create(cls, cfg, process):
        return cls() if cfg.value('count_steps', int) else None

    def on_step_end(self, loop, step):
        self.steps += 1

    def on_validation_end(self, loop, row):
        row['steps_counted'] = self.steps

    def on_epoch_end(self, loop, row, result, is_best):
        with open(loop.run.path('steps.txt'), 'w') as f:
            f.write(str(self.steps))

    def state_dict(self):
        return State({'steps': self.steps})

    def load_state_dict(self, state):
        self.steps = state.values['steps']


@pytest.fixture
def counted():
    """CountSteps registered for the test; the registry as it was afterwards."""
    registry, known = list(REGISTRY), dict(EXTENSION_OPTIONS)
    register(CountSteps)
    CountSteps.made.clear()
    yield CountSteps
    REGISTRY[:] = registry
    EXTENSION_OPTIONS.clear()
    EXTENSION_OPTIONS.update(known)


def test_a_registered_option_is_parsed_checked_and_documented(counted):
    assert TrainConfig.from_recipe('book', count_steps=3).count_steps == 3
    assert TrainConfig().count_steps == 0  # its default
    assert ('--count-steps', 'evaluation', '0',
            'count the optimizer steps (the test extension; 0: off)') in reference_rows(TrainConfig)
    assert '--count-steps N' in cli('train', '--help').stdout
    assert 'steps.txt' in run_folder_files()
    proc = cli('train', '--count-steps', '11', check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and err == [
        'densenet train: error: --count-steps must be between 0 and 10, got 11'], proc.stderr
    proc = cli('train', '--count-steps', 'many', check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "invalid int value: 'many'" in proc.stderr


def test_registering_a_taken_name_or_option_is_refused(counted):
    with pytest.raises(ValueError, match='taken'):
        register(CountSteps)
    epochs = option(1, help='a second --epochs', group='data')
    clash = type('Clash', (Extension,), {'name': 'clash', 'options': {'epochs': epochs}})
    with pytest.raises(ValueError, match='taken'):
        register(clash)


def test_without_registration_the_option_is_unknown():
    assert '--count-steps' not in cli('train', '--help').stdout
    with pytest.raises(AttributeError, match='count_steps'):
        _ = TrainConfig().count_steps


@pytest.mark.slow
def test_its_hooks_run_its_file_is_written_and_its_state_resumes(counted, tmp_path,
                                                                 real_data_dir):
    out = str(tmp_path / 'run')
    args = ['train', '--limit', '256', '--epochs', '1', '--resize', '32', '--batch-size', '64',
            '--val-limit', '500', '--data-dir', real_data_dir, '--out', out]
    proc = cli(*args, '--count-steps', '1')
    assert [int(r['steps_counted']) for r in read_metrics(out)] == [4]  # 256 / 64 steps
    with open(os.path.join(out, 'steps.txt')) as f:
        assert f.read() == '4'
    with open(os.path.join(out, 'checkpoint', 'state.json')) as f:
        assert json.load(f)['extensions']['count_steps'] == {'steps': 4}
    with open(os.path.join(out, 'summary.json')) as f:
        assert json.load(f)['config']['count_steps'] == 1
    # Resumed after its last epoch: a new instance takes the count back from the checkpoint.
    proc = cli(*args, '--count-steps', '1', '--resume')
    assert 'resuming' in proc.stdout and [e.steps for e in counted.made] == [4, 4]
    # --overwrite removes the file it declared, as the package's own.
    cli(*args, '--overwrite')
    assert not os.path.exists(os.path.join(out, 'steps.txt'))


def test_a_recorded_configuration_builds_the_same_configuration():
    """summary.json's `config` (`as_dict`) lists the extensions' options beside the loop's,
    flat, and rebuilds the configuration it came from."""
    cfg = TrainConfig.from_recipe('fast-cpu', ema=0.999, epochs=3)
    recorded = json.loads(json.dumps(cfg.as_dict()))
    assert 'extras' not in recorded and recorded['ema'] == 0.999 and recorded['epochs'] == 3
    assert TrainConfig.from_recipe(**recorded) == cfg
