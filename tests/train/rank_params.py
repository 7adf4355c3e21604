"""``python tests/train/rank_params.py train ... --rank-params DIR``: ``densenet`` with the
`RankParams` extension registered, for the distributed tests (tests/system), which compare
every worker's final parameters."""
import os
import sys

from densenet.cli import main
from densenet.system.files import atomic_write
from densenet.train.extensions import register
from densenet.train.extensions.base import Extension
from densenet.train.options import option


class RankParams(Extension):
    """Every worker's final parameters as ``rank-N.params`` in the --rank-params folder."""
    name = 'rank_params'
    options = {'rank_params': option(
        None, group='run folder', hidden=True,
        help='folder: every worker saves its final parameters here')}

    def __init__(self, folder):
        self.folder = folder

    @classmethod
    def create(cls, cfg, process):
        return cls(cfg.rank_params) if cfg.rank_params else None

    def on_fit_end(self, loop, summary):
        os.makedirs(self.folder, exist_ok=True)
        atomic_write(os.path.join(self.folder, f'rank-{loop.rank}.params'),
                     loop.model.net.save_parameters)


register(RankParams)

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
