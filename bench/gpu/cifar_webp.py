"""CIFAR binary batches <-> lossless WebP sprites, to carry real data to the GPU machine.

The device tool carries at most 64 MiB per call; a CIFAR-10 batch is 23.7 MB as xz
(its JPEG-derived pixels compress badly) but ~15 MB as a lossless WebP of all its
images tiled 100 per row. Round trip is exact (checked by `pack`).

    python3 cifar_webp.py pack   data_batch_1.bin  OUT/data_batch_1   -> OUT/data_batch_1.webp, .labels
    python3 cifar_webp.py unpack OUT/data_batch_1  DEST/data_batch_1.bin
"""
import sys

import numpy as np
from PIL import Image

RECORD = 3073
PER_ROW = 100


def to_sprite(images: np.ndarray) -> np.ndarray:
    """N×3×32×32 (N a multiple of PER_ROW) -> (N/PER_ROW·32)×(PER_ROW·32)×3."""
    n = images.shape[0]
    rows = n // PER_ROW
    return images.transpose(0, 2, 3, 1).reshape(rows, PER_ROW, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, PER_ROW * 32, 3)


def from_sprite(sprite: np.ndarray, n: int) -> np.ndarray:
    rows = n // PER_ROW
    return sprite.reshape(rows, 32, PER_ROW, 32, 3).transpose(0, 2, 1, 3, 4).reshape(n, 32, 32, 3).transpose(0, 3, 1, 2)


def pack(src: str, out: str) -> None:
    raw = np.fromfile(src, dtype=np.uint8)
    if raw.size % RECORD:
        sys.exit(f"{src}: {raw.size} bytes is not a whole number of {RECORD}-byte records")
    raw = raw.reshape(-1, RECORD)
    n = raw.shape[0]
    if n % PER_ROW:
        sys.exit(f"{src}: {n} records, not a multiple of {PER_ROW}")
    images = raw[:, 1:].reshape(n, 3, 32, 32)
    Image.fromarray(to_sprite(images)).save(out + ".webp", format="WEBP", lossless=True, quality=100, method=6)
    raw[:, 0].tofile(out + ".labels")
    back = from_sprite(np.asarray(Image.open(out + ".webp").convert("RGB")), n)
    if not np.array_equal(back, images):
        sys.exit(f"{out}.webp: round trip is not exact")
    print(f"{src}: {n} records -> {out}.webp (exact round trip)")


def unpack(stem: str, dest: str) -> None:
    labels = np.fromfile(stem + ".labels", dtype=np.uint8)
    images = from_sprite(np.asarray(Image.open(stem + ".webp").convert("RGB")), labels.size)
    out = np.empty((labels.size, RECORD), dtype=np.uint8)
    out[:, 0] = labels
    out[:, 1:] = images.reshape(labels.size, -1)
    out.tofile(dest)
    print(f"{stem}.webp: {labels.size} records -> {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(sys.argv[2], sys.argv[3])
