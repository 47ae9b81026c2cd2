"""A generated, labelled image folder: circles, squares and triangles in random bright colours on dark
backgrounds, one sub-folder per shape. The tests train on it, and the README's folder run was made on it.

    python benchmarks/shapes.py OUT [--per-class 1000] [--size 32] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")  # the classes of make_shapes_folder, in label order


def make_shapes_folder(root: Path, per_class: int = 40, size: int = 32, seed: int = 0) -> Path:
    """A learnable, labelled image folder: one sub-folder per shape, each shape in a random bright colour (so
    only its form tells the class) at a random place and scale on a dark background, saved as PNG."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 40, 3)))
            radius = rng.uniform(0.22, 0.35) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            box = (cx - radius, cy - radius, cx + radius, cy + radius)
            colour = tuple(int(v) for v in rng.permutation([rng.integers(200, 256), rng.integers(0, 256), 40]))
            draw = ImageDraw.Draw(image)
            if shape == "circle":
                draw.ellipse(box, fill=colour)
            elif shape == "square":
                draw.rectangle(box, fill=colour)
            else:
                draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
            image.save(root / shape / f"{number:03d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to create")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_shapes_folder(args.out, args.per_class, args.size, args.seed)
    print(f"wrote {args.per_class * len(SHAPES):,} images to {args.out}")


if __name__ == "__main__":
    main()
