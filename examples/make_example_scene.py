"""Write a seeded synthetic glacier scene (5-band GeoTIFF + 0/1 mask) or a classic training layout.

Usage::

    # a 2048 x 2048 scene in UTM 45N at 30 m, with a Landsat-like nodata border
    python examples/make_example_scene.py scene.tif scene_mask.tif --size 2048 --nodata-border

    # a big benchmark scene in EPSG:4326 (one arc second pixels), with clouds
    python examples/make_example_scene.py big.tif big_mask.tif --size 8192 --crs EPSG:4326 --clouds --progress

    # eight 256 x 256 pairs in the classic layout (masked_NAME.npy + NAME.tif)
    python examples/make_example_scene.py --classic data/ --count 8 --size 256

The same ``--seed`` always gives identical pixels; the scene is written block by block,
so memory does not grow with ``--size``. See :mod:`geoglacier.synthetic` for what the
scene contains.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", nargs="?", help="output scene GeoTIFF (5 bands, float32)")
    parser.add_argument("mask", nargs="?", help="output mask GeoTIFF (uint8 0/1)")
    parser.add_argument("--size", type=int, default=512, help="edge in pixels (default 512)")
    parser.add_argument("--height", type=int, help="rows (default --size)")
    parser.add_argument("--width", type=int, help="columns (default --size)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--crs", default="utm", help="'utm' (EPSG:32645), 'EPSG:4326' or any CRS (default utm)"
    )
    parser.add_argument("--pixel-size", type=float, help="in CRS units (default 30 m or 1 arc second)")
    parser.add_argument("--nodata-border", action="store_true", help="rotated footprint, nodata outside")
    parser.add_argument("--clouds", action="store_true", help="add clouds and cloud shadows")
    parser.add_argument("--block-size", type=int, default=512, help="rendering block edge (default 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--classic", metavar="DIR", help="write classic-layout pairs into DIR instead")
    parser.add_argument("--count", type=int, default=4, help="pairs for --classic (default 4)")
    args = parser.parse_args(argv)

    from geoglacier.errors import GeoglacierError
    from geoglacier.synthetic import generate_scene, write_classic_layout

    try:
        if args.classic:
            pairs = write_classic_layout(
                args.classic,
                n=args.count,
                size=args.size,
                seed=args.seed,
                clouds=args.clouds,
                overwrite=args.overwrite,
            )
            print(f"wrote {len(pairs)} pairs into {args.classic}")
            return 0
        if not (args.scene and args.mask):
            parser.error("give SCENE and MASK output paths, or --classic DIR")
        out = generate_scene(
            args.scene,
            args.mask,
            height=args.height or args.size,
            width=args.width or args.size,
            seed=args.seed,
            crs=args.crs,
            pixel_size=args.pixel_size,
            nodata_border=args.nodata_border,
            clouds=args.clouds,
            block_size=args.block_size,
            overwrite=args.overwrite,
            progress=args.progress,
        )
    except GeoglacierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {out.scene_path} and {out.mask_path}: {out.height} x {out.width} px, "
        f"{out.crs.to_string()}, glacier fraction {out.glacier_fraction:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
