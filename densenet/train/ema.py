"""An exponential moving average (EMA) of a network's weights, for evaluation.

After every optimizer step each parameter's average moves towards it:
``avg = d * avg + (1 - d) * w``, with ``d = min(decay, (1 + t) / (10 + t))`` at
update ``t`` (so early updates, while the average still holds the random
initialisation, weigh the new weights more). BatchNorm's running mean and
variance are averaged alike, so the averaged network is complete on its own.
"""
from contextlib import contextmanager


class WeightEMA:
    """The moving average of every parameter of `net` (on the first device)."""

    def __init__(self, net, decay):
        if not 0 < decay < 1:
            from densenet.errors import UsageError
            raise UsageError(f'--ema must be a decay in (0, 1), e.g. 0.999; got {decay}')
        self.net, self.decay, self.updates = net, decay, 0
        self.params = list(net.collect_params().values())
        self.average = [p.data().copy() for p in self.params]

    def rate(self):
        """The decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self):
        """Move the average towards the network's current parameters."""
        d = self.rate()
        for avg, p in zip(self.average, self.params):
            avg *= d
            avg += (1 - d) * p.data()
        self.updates += 1

    @contextmanager
    def _own_weights_kept(self):
        """Whatever the block puts into the network, its own weights are back after it."""
        own = [p.data().copy() for p in self.params]
        try:
            yield self.net
        finally:
            for p, w in zip(self.params, own):
                p.set_data(w)

    @contextmanager
    def applied(self):
        """The network with the averaged parameters inside the block, its own after it."""
        with self._own_weights_kept() as net:
            for p, avg in zip(self.params, self.average):
                p.set_data(avg)
            yield net

    def save(self, path):
        """The average as a params file of the network (loadable like any other)."""
        with self.applied() as net:
            net.save_parameters(path)

    def load(self, path):
        """Take the average from a file `save` wrote; the network's own weights stay."""
        with self._own_weights_kept() as net:
            net.load_parameters(path, ctx=self.params[0].list_ctx())
            self.average = [p.data().copy() for p in self.params]
