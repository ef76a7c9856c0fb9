"""Write a synthetic data set with real structure in a real on-disk format, for trying
``archprobe train`` where no data set can be downloaded.

    python examples/synthetic_data.py DIR [--dataset fashion-mnist|mnist|cifar10] [--train N] [--test N] [--gzip]
    archprobe train lenet --dataset fashion-mnist --data-root DIR

The images are archprobe's structured stand-in (each class a fixed pattern of blobs, shifted,
with noise; :func:`archprobe.training.datasets.structured_images`), laid out as torchvision
lays out the real data sets: IDX files under ``DIR/FashionMNIST/raw/`` or ``DIR/MNIST/raw/``,
CIFAR-10's pickled batches under ``DIR/cifar-10-batches-py/``. They are not Fashion-MNIST:
say so wherever their numbers appear.
"""

import argparse

from archprobe.training.datasets import write_structured_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic data set in a real on-disk format.")
    parser.add_argument("root")
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist", "cifar10"])
    parser.add_argument("--train", type=int, default=60000, help="training images (default: %(default)s)")
    parser.add_argument("--test", type=int, default=10000, help="test images (default: %(default)s)")
    parser.add_argument("--gzip", action="store_true", help="write .gz IDX files, as the downloads are")
    args = parser.parse_args()
    directory = write_structured_dataset(args.root, args.dataset, train=args.train, test=args.test, gzip=args.gzip)
    print(f"wrote {args.train:,} training and {args.test:,} test images (synthetic) to {directory}")


if __name__ == "__main__":
    main()
