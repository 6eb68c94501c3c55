"""``gdn provision`` at scale: on a Ray cluster (``--ray``), split into mission areas (``--split-area-km``),
or grown by a neighbouring map (``--incremental``). The one-process path stays in ``cli.cmd_provision``.

Imports nothing heavy at module level, so ``gdn --help`` stays instant; Ray is imported only for ``--ray``.
"""
from __future__ import annotations

import time

LOCAL_RAY = "local"  # --ray without an address: a Ray instance on this machine


def add_arguments(p) -> None:
    scale = p.add_argument_group("at scale")
    scale.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                       help="describe tiles and detect SIFT as Ray Data jobs: no ADDRESS starts Ray here, 'auto' "
                            "joins the running cluster, ray://HOST:10001 a remote one (needs pip install "
                            "'ray[data]' and this package on every node)")
    scale.add_argument("--ray-workers", type=int, default=None,
                       help="descriptor actors (default: one per GPU of the cluster, else one per CPU)")
    scale.add_argument("--split-area-km", type=float, default=None,
                       help="cut a larger map into mission areas of at most this size, each its own corpus "
                            "with its own ENU origin: OUT/area_<i>_<j>/ and OUT/areas.json (e.g. 20)")
    scale.add_argument("--area-overlap-m", type=float, default=None,
                       help="overlap of neighbouring areas (default: one tile and one stride)")
    scale.add_argument("--incremental", action="store_true",
                       help="add the tiles of --ortho that the existing corpus --out lacks, with its model as it "
                            "is; existing tiles are kept, not recomputed (terrain: the corpus's own source "
                            "unless --dem / --ground-alt-m / --assume-sea-level is given)")


def wants_scale(args) -> bool:
    return args.ray is not None or args.split_area_km is not None or args.incremental


def provision_at_scale(args, config, progress) -> int:
    """The ``--ray`` / ``--split-area-km`` / ``--incremental`` forms of ``gdn provision``; config: the
    ProvisionConfig the command line gave; progress(stage, done, total)."""
    t0 = time.monotonic()
    if args.incremental:
        if args.ray is not None or args.split_area_km is not None:
            raise ValueError("--incremental adds one map to one corpus, on this machine: without --ray or "
                             "--split-area-km")
        from gps_denied_nav.core.corpus_add import add_map

        terrain = {k: getattr(config, k) for k in ("dem_path", "ground_alt_m", "assume_sea_level", "geoid_offset_m",
                                                   "terrain_sigma_m", "map_registration_sigma_m")}
        given = config.dem_path is not None or config.ground_alt_m is not None or config.assume_sea_level
        result = add_map(args.ortho, args.out, terrain if given else None, device=config.device, progress=progress)
        print(f"corpus {args.out}: {len(result.new_tile_ids)} tiles added ({result.new_cells} new SIFT cells), "
              f"{result.manifest.num_tiles} in all, in {time.monotonic() - t0:.1f} s")
        return 0

    import functools
    import contextlib

    from gps_denied_nav.core.corpus_build import provision

    session, provision_fn = contextlib.nullcontext(), provision
    if args.ray is not None:
        from gps_denied_nav.core.provision_ray import RayConfig, provision_ray, ray_session

        address = None if args.ray == LOCAL_RAY else args.ray
        session = ray_session(address)  # one connection for every area
        provision_fn = functools.partial(provision_ray, ray_config=RayConfig(address=address,
                                                                             num_workers=args.ray_workers))
    with session:
        if args.split_area_km is None:
            result = provision_fn(args.ortho, args.out, config, progress=progress)
            manifest = getattr(result, "manifest", result)
            print(f"corpus {args.out}: {manifest.num_tiles} tiles in {time.monotonic() - t0:.1f} s")
            return 0
        from gps_denied_nav.core.provision_areas import provision_areas

        index = provision_areas(args.ortho, args.out, config, area_size_m=1000.0 * args.split_area_km,
                                overlap_m=args.area_overlap_m, provision_fn=provision_fn, progress=progress)
    made = [a for a in index["areas"] if "dir" in a]
    print(f"{len(made)} mission-area corpora in {args.out} ({len(index['areas']) - len(made)} areas without map "
          f"data skipped), {sum(a['num_tiles'] for a in made)} tiles, in {time.monotonic() - t0:.1f} s; "
          f"index: {args.out}/areas.json")
    return 0
