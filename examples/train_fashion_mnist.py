"""Train the book's DenseNet on Fashion-MNIST: `densenet train` with the same flags.

    python examples/train_fashion_mnist.py                      # the book's recipe
    python examples/train_fashion_mnist.py --recipe fast-cpu    # 54 min on a 2-core AMX Xeon
    python examples/train_fashion_mnist.py --limit 5000 --epochs 2 --resize 32
"""
import sys

import densenet  # noqa: F401  (first: it sets MXNet's thread count before mxnet loads)
from densenet.cli import main

if __name__ == '__main__':
    sys.exit(main(['train', *sys.argv[1:]]))
