"""The example notebook runs headless, every cell, with this interpreter's kernel."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, '..', '..', 'examples', 'densenet.ipynb')


def test_notebook_runs(real_data_dir, monkeypatch):
    monkeypatch.setenv('DENSENET_DATA', real_data_dir)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name='python3',
                   resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}}).execute()
    outputs = {i: c.outputs for i, c in enumerate(nb.cells) if c.cell_type == 'code'}
    texts = [''.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', ''))
                     for o in outs) for outs in outputs.values()]
    assert '(4, 23, 8, 8)' in texts[1]
    assert '(4, 10, 4, 4)' in texts[2]
    assert 'Dense output shape:\t (1, 10)' in texts[3] and texts[3].rstrip().endswith('29')
    assert '4 steps, first-batch loss' in texts[4]
