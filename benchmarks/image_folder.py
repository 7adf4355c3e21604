"""ImageFolder against Fashion-MNIST's in-memory batches: decoding once, then epochs.

Writes N Fashion-MNIST training images as PNG files (a class folder each),
then measures, side by side in one run: the first ImageFolder (decode every
file, resize, write the on-disk cache) with 0 and with `--workers` processes,
a second ImageFolder (cache found), and one pass over the training batches of
the cached folder and of `densenet.data.FashionMNIST` (the same images, same
side and batch size, both with the augmentation on). Prints img/s and ratios.

    python benchmarks/image_folder.py --images 10000 --side 64
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
# Any densenet import sets the threads first (densenet/__init__.py), before mxnet loads.
from densenet.data import CLASSES, FashionMNIST, ImageFolder, load_split
from densenet.system import runtime
from densenet.system.machine import summary_line


def write_pngs(root, n):
    from PIL import Image
    images, labels = load_split('train')
    for c in range(10):
        os.makedirs(os.path.join(root, CLASSES[c]), exist_ok=True)
    for i in range(n):
        Image.fromarray(images[i]).save(os.path.join(root, CLASSES[labels[i]], f'{i:05d}.png'))


def one_pass(loader):
    tic, seen = time.perf_counter(), 0
    for X, _ in loader:
        X.wait_to_read()
        seen += X.shape[0]
    return seen / (time.perf_counter() - tic)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=10000)
    p.add_argument('--side', type=int, default=64)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--workers', type=int, default=os.cpu_count())
    p.add_argument('--json', help='also write the figures here')
    args = p.parse_args()
    print(summary_line(runtime.machine()))
    rec = {'machine': runtime.machine(), 'images': args.images, 'side': args.side}
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, 'folder')
        write_pngs(root, args.images)
        for workers in (0, args.workers):
            cache = os.path.join(tmp, f'cache-{workers}')
            tic = time.perf_counter()
            data = ImageFolder(root, batch_size=args.batch_size, resize=args.side,
                               val_split=0.01, num_workers=workers, cache_dir=cache,
                               augment=True, log=lambda *_: None)
            rec[f'decode_{workers}_workers_img_s'] = args.images / (time.perf_counter() - tic)
        tic = time.perf_counter()
        data = ImageFolder(root, batch_size=args.batch_size, resize=args.side, val_split=0.01,
                           cache_dir=cache, augment=True, log=lambda *_: None)
        rec['cached_open_s'] = time.perf_counter() - tic
        n = len(data.train_arrays[1])
        fm = FashionMNIST(batch_size=args.batch_size, resize=(args.side, args.side),
                          limit=n, augment=True)
        rec['folder_epoch_img_s'] = one_pass(data.train_dataloader())
        rec['fashion_mnist_epoch_img_s'] = one_pass(fm.train_dataloader())
    print(f'{args.images} PNG files, {args.side}x{args.side}, batch {args.batch_size}')
    for workers in (0, args.workers):
        print(f'  first run, decode + resize + cache, {workers} worker process(es): '
              f'{rec[f"decode_{workers}_workers_img_s"]:8.0f} img/s')
    print(f'  later runs, cache found: {rec["cached_open_s"]:.2f} s to open')
    print(f'  training batches (augmented), image folder from its cache: '
          f'{rec["folder_epoch_img_s"]:8.0f} img/s')
    ratio = rec['folder_epoch_img_s'] / rec['fashion_mnist_epoch_img_s']
    print(f'  training batches (augmented), Fashion-MNIST in memory:     '
          f'{rec["fashion_mnist_epoch_img_s"]:8.0f} img/s (folder / in-memory = {ratio:.2f})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rec, f, indent=1)


if __name__ == '__main__':
    main()
