"""The example notebooks run headless, every cell, with this interpreter's kernel."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, '..', '..', 'examples')


def check_densenet(texts, outputs):
    assert '(4, 23, 8, 8)' in texts[1]
    assert '(4, 10, 4, 4)' in texts[2]
    assert 'Dense output shape:\t (1, 10)' in texts[3] and texts[3].rstrip().endswith('29')
    assert '4 steps, first-batch loss' in texts[4]


def check_chapter_measured(texts, outputs):
    def figures(cell):
        return [o for o in outputs[cell] if 'image/png' in o.get('data', {})]

    assert 'feature reuse (Huang et al. 2017, Figure 5), blocks 1, 2, 3, 4' in texts[1]
    assert '4. the classifier concentrates on the final feature maps' in texts[1]
    assert len(figures(1)) == 1
    assert '758,226 parameters' in texts[2] and '11,175,818 parameters' in texts[2]
    assert 'whole network: 46.3 MB standard, 25.4 MB memory-efficient' in texts[3]
    assert len(figures(3)) == 1
    assert 'pool_type=max' in texts[4] and 'output: (8, 10)' in texts[4]
    assert 'same parameters: True' in texts[4]


@pytest.mark.parametrize('name, check', [
    ('densenet.ipynb', check_densenet),
    ('chapter_measured.ipynb', check_chapter_measured),
], ids=['densenet', 'chapter_measured'])
def test_notebook_runs(name, check, real_data_dir, monkeypatch):
    notebook = os.path.join(EXAMPLES, name)
    monkeypatch.setenv('DENSENET_DATA', real_data_dir)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name='python3',
                   resources={'metadata': {'path': os.path.dirname(notebook)}}).execute()
    outputs = [c.outputs for c in nb.cells if c.cell_type == 'code']
    texts = [''.join(o.get('text', '') + str(o.get('data', {}).get('text/plain', ''))
                     for o in outs) for outs in outputs]
    check(texts, outputs)
