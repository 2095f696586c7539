"""The store's JPEG codec (torchcodec) against torchvision's deprecated one, side by side.

A jpeg store (``ssl-emp prepare --format jpeg``) encodes each image once and decodes every
batch it serves, so the codec decides both what the store holds and how fast it streams.
This checks, on Fashion-MNIST training images, that torchcodec writes the same bytes as
torchvision's ``encode_jpeg`` and decodes them to the same pixels as its ``decode_jpeg``
(so a store prepared or read with either trains to the same numbers), and times the batched
decode of both in alternating blocks within one process; the ratio is printed.

    python tools/bench_jpeg_codec.py                 # 10,000 images, quality 90, batches of 256
    python tools/bench_jpeg_codec.py --images 60000 --quality 95
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torchcodec.decoders import decode_jpeg
from torchcodec.encoders import JpegEncoder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ssl_emp.config import load_config  # noqa: E402
from ssl_emp.data.sources import build_datasets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--quality", type=int, default=90, help="as `ssl-emp prepare` (90)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="alternating timing blocks")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "The image decoding and encoding capabilities")
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as torchvision_decode
    from torchvision.io import encode_jpeg as torchvision_encode

    config = load_config(str(ROOT / "configs" / "simclr_fashion_mnist.yaml"), ["data.subset=null"])
    train, _ = build_datasets(config.data, seed=0)
    images = train.images[: args.images]
    ours = [JpegEncoder(image.contiguous()).to_tensor(quality=args.quality) for image in images]
    theirs = [torchvision_encode(image.contiguous(), quality=args.quality) for image in images]
    same_bytes = sum(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    decoded = decode_jpeg(ours, mode="UNCHANGED")
    reference = torchvision_decode(ours, mode=ImageReadMode.UNCHANGED)
    same_pixels = sum(torch.equal(a, b) for a, b in zip(decoded, reference, strict=True))
    print(f"{len(images)} Fashion-MNIST images, quality {args.quality}:")
    print(f"  same JPEG bytes (torchcodec vs torchvision encoder): {same_bytes} of {len(images)}")
    print(f"  same pixels (torchcodec vs torchvision decoder):     {same_pixels} of {len(images)}")

    batches = [ours[i : i + args.batch_size] for i in range(0, len(ours), args.batch_size)]
    seconds = {"torchcodec": [], "torchvision": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        for batch in batches:
            decode_jpeg(batch, mode="UNCHANGED")
        seconds["torchcodec"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for batch in batches:
            torchvision_decode(batch, mode=ImageReadMode.UNCHANGED)
        seconds["torchvision"].append(time.perf_counter() - started)
    for name, times in seconds.items():
        best = min(times)
        rate = len(images) / best
        print(f"  {name:<11} batched decode: {rate:>9.0f} images/s (best of {len(times)})")
    ratios = sorted(
        a / b for a, b in zip(seconds["torchcodec"], seconds["torchvision"], strict=True)
    )
    print(
        f"  torchcodec / torchvision decode time, median of blocks: {ratios[len(ratios) // 2]:.2f}"
    )


if __name__ == "__main__":
    main()
