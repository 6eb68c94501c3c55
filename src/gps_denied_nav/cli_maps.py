"""``gdn fetch-map`` / ``gdn fetch-dem``: a map (or DEM) GeoTIFF of any area from a tile server the user names.

No provider is built in: the user gives an XYZ URL template or a WMTS capabilities URL, a user agent and
the attribution the provider's licence asks for. The tiles go through a resumable, rate-limited cache
(``maps.fetch``) into a Cloud Optimized GeoTIFF on the exact EPSG:3857 tile grid (``maps.mosaic``), with a
``MAP.tif.source.json`` sidecar saying where it came from (``maps.record``). Heavy imports wait for the
handler, so ``gdn --help`` stays instant.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

MAX_TILES = 2000  # above this, --yes: a misplaced zoom must not silently pull a provider's whole region
EST_KB_PER_TILE = 30  # a 256 px satellite JPEG; PNG and terrain tiles run larger: the estimate is a floor


def _common_arguments(p) -> None:
    area = p.add_mutually_exclusive_group(required=True)
    area.add_argument("--bbox", metavar="W,S,E,N", help="area in WGS84 degrees (a negative west: --bbox=-3.2,...)")
    area.add_argument("--geojson", metavar="AREA.geojson", help="area: the bounds of a GeoJSON file's geometries")
    p.add_argument("--zoom", type=int, required=True, help="XYZ zoom (17: ~1.2 m pixels at the equator, "
                   "x cos(latitude) elsewhere; each zoom step halves the pixel and quadruples the tiles)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--source", metavar="URL_TEMPLATE", help="XYZ tile URL with {z} {x} {y} ({-y}: TMS rows, "
                        "{s}: one of --subdomains), e.g. https://tiles.example.org/{z}/{x}/{y}.png")
    source.add_argument("--wmts", metavar="CAPABILITIES_URL", help="a WMTS GetCapabilities URL (needs --layer; "
                        "the layer must offer a GoogleMapsCompatible / EPSG:3857 tile matrix set)")
    p.add_argument("--layer", help="WMTS layer identifier")
    p.add_argument("--subdomains", default="abc", help="letters {s} stands for")
    p.add_argument("--out", required=True, help="GeoTIFF to write (replaced only once complete)")
    p.add_argument("--cache", help="tile cache directory (default OUT.tiles); a re-run fetches only what is missing")
    p.add_argument("--user-agent", required=True, help="identifies your application to the server, as tile usage "
                   "policies require (e.g. 'my-survey-app/1.0 contact@example.org')")
    p.add_argument("--attribution", default="", help="the attribution the provider's licence asks for; recorded "
                   "in the GeoTIFF tags and the sidecar")
    p.add_argument("--rate-per-s", type=float, default=10.0, help="requests a second, retries included")
    p.add_argument("--workers", type=int, default=4, help="concurrent connections")
    p.add_argument("--timeout-s", type=float, default=20.0, help="per request")
    p.add_argument("--max-attempts", type=int, default=5, help="per tile (timeouts, 429, 5xx, corrupt tiles)")
    p.add_argument("--max-tiles", type=int, default=MAX_TILES, help="more tiles than this need --yes")
    p.add_argument("--yes", action="store_true", help="fetch even more than --max-tiles tiles")
    p.add_argument("--allow-missing", action="store_true", help="write the map even when tiles are missing "
                   "(404) or failed after every retry, leaving them nodata; default: fail with the list")


def add_parser(sub) -> None:
    """Register ``fetch-map`` and ``fetch-dem`` on ``gdn``'s subparsers."""
    from gps_denied_nav.maps.dem import ENCODINGS, VERTICAL_DATUMS

    p = sub.add_parser("fetch-map", help="a map GeoTIFF (COG, EPSG:3857) of an area from an XYZ or WMTS tile "
                       "server you name, for gdn provision --ortho")
    _common_arguments(p)
    p.add_argument("--compress", choices=("deflate", "jpeg"), default="deflate",
                   help="deflate: lossless (pixels exactly the tiles'); jpeg: ~5x smaller, lossy")
    p.set_defaults(func=cmd_fetch_map)

    p = sub.add_parser("fetch-dem", help="a float32 DEM GeoTIFF (metres) of an area from terrain tiles you name, "
                       "for gdn provision --dem")
    _common_arguments(p)
    p.add_argument("--encoding", required=True, choices=ENCODINGS, help="how the tiles pack heights: terrarium "
                   "(h = R*256 + G + B/256 - 32768) or mapbox-terrain-rgb (h = -10000 + (R*65536 + G*256 + B)*0.1)")
    p.add_argument("--vertical-datum", required=True, choices=VERTICAL_DATUMS, help="what the heights are "
                   "measured from, as the provider states it (egm96/egm2008: geoid heights, which provisioning "
                   "needs --geoid-offset-m for; ellipsoid: WGS84 ellipsoidal)")
    p.set_defaults(func=cmd_fetch_dem)


def cmd_fetch_map(args) -> int:
    from gps_denied_nav.maps.mosaic import rgba_pixels

    out, source = _fetch_and_write(args, "imagery", lambda image, tile_px: rgba_pixels(image, tile_px),
                                   dict(bands=4, dtype="uint8", fill=0, compress=args.compress), {})
    print(f"map {out}: {source.tile_count} tiles at zoom {source.zoom}; provenance {out}.source.json")
    print(f"next: gdn provision --ortho {out} --out CORPUS_DIR (--dem DEM.tif | --ground-alt-m H) ...")
    return 0


def cmd_fetch_dem(args) -> int:
    from gps_denied_nav.maps.dem import DEM_NODATA_M, GEOID_DATUMS, VERTICAL_DATUM_TAG, dem_pixels

    extra = {"dem_encoding": args.encoding, VERTICAL_DATUM_TAG: args.vertical_datum, "units": "metre"}
    out, source = _fetch_and_write(args, "dem", lambda image, tile_px: dem_pixels(image, tile_px, args.encoding),
                                   dict(bands=1, dtype="float32", fill=DEM_NODATA_M, nodata=DEM_NODATA_M), extra)
    print(f"DEM {out}: {source.tile_count} tiles at zoom {source.zoom}, {args.encoding}, heights {args.vertical_datum}")
    offset = " --geoid-offset-m N" if args.vertical_datum in GEOID_DATUMS else ""
    print(f"next: gdn provision --ortho MAP.tif --dem {out}{offset} ..."
          + (f"  (N: the area's {args.vertical_datum.upper()} geoid separation, h - H)" if offset else ""))
    return 0


def _url_for(args, zoom: int):
    """(tile -> URL, source description) for --source or --wmts."""
    from gps_denied_nav.maps.xyz import check_template, tile_url

    if args.wmts:
        from gps_denied_nav.maps.wmts import parse_capabilities, read_capabilities

        if not args.layer:
            raise ValueError("--wmts needs --layer (the capabilities list the layers)")
        layer = parse_capabilities(read_capabilities(args.wmts, args.user_agent, args.timeout_s), args.layer)
        return layer.url_for(zoom), f"WMTS {args.wmts} layer {args.layer} set {layer.matrix_set} {layer.image_format}"
    if args.layer:
        raise ValueError("--layer is for --wmts; an XYZ --source names its layer in the URL")
    template = check_template(args.source)
    return (lambda tile: tile_url(template, tile, args.subdomains)), template


def _fetch_and_write(args, kind: str, pixels, cog_options: dict, extra: dict):
    from gps_denied_nav.maps.fetch import FetchConfig, TileCache, TileFetchError, fetch_tiles
    from gps_denied_nav.maps.mosaic import write_cog
    from gps_denied_nav.maps.record import MapSource, utc_now_iso, write_sidecar
    from gps_denied_nav.maps.xyz import bbox_from_geojson, parse_bbox, tile_block
    from gps_denied_nav.replay.session import print_progress

    bbox = parse_bbox(args.bbox) if args.bbox else bbox_from_geojson(args.geojson)
    block = tile_block(bbox, args.zoom)
    if block.count > args.max_tiles and not args.yes:
        _, _, width_px, height_px = block.crop_window(bbox, 256)
        raise ValueError(f"{block.count} tiles at zoom {args.zoom} (about {block.count * EST_KB_PER_TILE / 1024:.0f} "
                         f"MB or more to download, a {width_px} x {height_px} px map at 256 px tiles): more than "
                         f"--max-tiles {args.max_tiles}; add --yes to fetch them, or take a lower --zoom")
    if not args.attribution:
        print("note: no --attribution; most tile licences require one with every use of the map", file=sys.stderr)
    url_for, source = _url_for(args, args.zoom)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = TileCache(args.cache or f"{out}.tiles", source)
    config = FetchConfig(user_agent=args.user_agent, rate_per_s=args.rate_per_s, workers=args.workers,
                         timeout_s=args.timeout_s, max_attempts=args.max_attempts)
    tiles = block.tiles()
    print(f"fetch-{'map' if kind == 'imagery' else 'dem'}: {len(tiles)} tiles at zoom {args.zoom} from {source}; "
          f"cache {cache.root}", file=sys.stderr)
    report = fetch_tiles(tiles, url_for, cache, config, progress=lambda done, total: print_progress("tiles", done, total))
    print(f"{report.fetched} fetched, {report.cached} from the cache, {len(report.missing)} missing, "
          f"{len(report.failed)} failed; {report.requests} requests", file=sys.stderr)
    problems = report.failed + report.missing
    if problems and not args.allow_missing:
        listed = "\n".join(f"  {p.url}: {p.reason}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        counts = " and ".join(f"{n} tiles {what}" for n, what in ((len(report.failed), "failed after retries"),
                                                                  (len(report.missing), "missing on the server"))
                              if n)
        raise TileFetchError(f"{counts}; no map written (re-run to retry failed tiles, or --allow-missing to "
                             f"leave them nodata):\n{listed}{more}")
    first = next((image for image in map(cache.read, tiles) if image is not None), None)
    if first is None:
        raise TileFetchError(f"no tile of the {len(tiles)} could be fetched, e.g. {url_for(tiles[0])}")
    tile_px = first.size[0]
    absent = {p.tile for p in problems}

    def read_tile(tile):
        image = cache.read(tile)
        if image is None and (tile.z, tile.x, tile.y) not in absent:
            raise TileFetchError(f"tile {tile.z}/{tile.x}/{tile.y} vanished from the cache {cache.root}: re-run")
        return None if image is None else pixels(image, tile_px)

    record = MapSource(kind=kind, source=source, tile_url_example=url_for(tiles[0]), zoom=args.zoom,
                       bbox_deg=bbox.as_list(), bounds_epsg3857_m=[], tile_count=len(tiles),
                       tiles_missing=[list(p.tile) for p in problems], fetched_utc=utc_now_iso(),
                       user_agent=args.user_agent, attribution=args.attribution, extra=extra)
    _, bounds = write_cog(out, block, bbox, tile_px, read_tile, tags=record.tags(), **cog_options)
    record = dataclasses.replace(record, bounds_epsg3857_m=list(bounds))
    write_sidecar(out, record)
    return out, record
