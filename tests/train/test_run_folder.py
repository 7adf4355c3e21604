"""The run folder's files are one definition: every writer uses it, --overwrite clears it."""
import os

import pytest

from densenet.cli import main
from densenet.errors import UsageError
from densenet.train.extensions import run_folder_files
from densenet.train.run_folder import CHECKPOINT, Run

RUN_FILES = run_folder_files()

TINY = ['--limit', '256', '--epochs', '1', '--resize', '32', '--batch-size', '64',
        '--val-limit', '500']


def _files(out):
    return sorted(f for f in os.listdir(out) if not f.startswith('.'))


def test_overwrite_removes_every_run_file(tmp_path):
    """Each name in RUN_FILES marks a run and goes with --overwrite; other files stay."""
    out = tmp_path / 'run'
    out.mkdir()
    for name in RUN_FILES:
        if name == CHECKPOINT:
            (out / name).mkdir()
            (out / name / 'state.json').write_text('{}')
        else:
            (out / name).write_text('old')
    (out / 'notes.txt').write_text('mine')
    run = Run(str(out), RUN_FILES)
    assert 'ema.params' in RUN_FILES and 'ema.params.json' in RUN_FILES  # --ema's
    assert sorted(run.existing()) == sorted(RUN_FILES)
    with run.claimed(resume=False, overwrite=True, log=lambda s: None):
        assert _files(out) == ['notes.txt']


@pytest.mark.slow
def test_a_run_writes_only_run_files_and_overwrite_leaves_none_of_the_old(tmp_path,
                                                                          real_data_dir):
    """A run with --ema and --tta writes nothing outside RUN_FILES; replacing it with a run
    without --ema leaves no ema.params (or any other file) of the first run behind."""
    out = str(tmp_path / 'run')
    data = ['--data-dir', real_data_dir, '--out', out]
    assert main(['train', *TINY, *data, '--ema', '0.9', '--tta']) == 0
    first = _files(out)
    assert 'ema.params' in first and 'ema.params.json' in first
    assert set(first) <= set(RUN_FILES)
    # evaluate writes its confusion matrix beside the params: part of the run too.
    assert main(['evaluate', '--params', os.path.join(out, 'last.params'),
                 '--data-dir', real_data_dir, '--limit', '500']) == 0
    assert 'confusion.png' in _files(out)
    assert main(['train', *TINY, *data, '--overwrite']) == 0
    second = _files(out)
    assert 'ema.params' not in second and 'ema.params.json' not in second
    assert 'confusion.png' not in second
    assert second == ['best.params', 'best.params.json', 'checkpoint', 'curves.png',
                      'last.params', 'last.params.json', 'metrics.csv', 'summary.json']
    assert sorted(os.listdir(os.path.join(out, 'checkpoint'))) == [
        'epoch-0001.params', 'epoch-0001.states', 'state.json']


@pytest.mark.parametrize('record', ['{"epoch": 1', '{"epoch": 1, "files": []}',
                                    '{"epoch": 1, "files": [], "extensions": null}'])
def test_a_checkpoint_this_version_did_not_write_is_refused_in_one_line(tmp_path, record):
    """Unreadable JSON, or a record without the extensions' parts: --resume names the file
    and the way out instead of failing inside the loop."""
    run = Run(str(tmp_path))
    os.makedirs(run.ckpt)
    with open(os.path.join(run.ckpt, 'state.json'), 'w') as f:
        f.write(record)
    with pytest.raises(UsageError, match=r"^--resume: .*state\.json is damaged \(.*\); use "
                                         r"--overwrite to start again, or another --out$"):
        run.load_checkpoint()
