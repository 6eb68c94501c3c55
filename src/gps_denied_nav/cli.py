"""``gdn``: the command-line tool (provision a corpus, simulate a clip, run the graph, replay, demo).

Subcommands import their heavy dependencies lazily, so ``gdn --help`` answers at once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gps_denied_nav import cli_engine, cli_maps, cli_photos, cli_provision, cli_vpr


def _progress(stage: str):
    from gps_denied_nav.replay.session import print_progress

    return lambda done, total: print_progress(stage, done, total)


def cmd_provision(args) -> int:
    from gps_denied_nav.core.corpus_build import ProvisionConfig, provision

    config = ProvisionConfig(tile_size_m=args.tile_size_m, stride_m=args.stride_m, tile_px=args.tile_px,
                             dem_path=args.dem, ground_alt_m=args.ground_alt_m, assume_sea_level=args.assume_sea_level,
                             geoid_offset_m=args.geoid_offset_m, terrain_sigma_m=args.terrain_sigma_m,
                             map_registration_sigma_m=args.map_sigma_m, descriptor_model=args.model,
                             model_checkpoint=args.checkpoint)

    def progress(stage, done, total):
        _progress(f"provision: {stage}")(done, total)

    if cli_provision.wants_scale(args):  # --ray, --split-area-km, --incremental
        return cli_provision.provision_at_scale(args, config, progress)
    t0 = time.monotonic()
    manifest = provision(args.ortho, args.out, config, progress=progress)
    print(f"corpus {args.out}: {manifest.num_tiles} tiles in {time.monotonic() - t0:.1f} s")
    return 0


def cmd_simulate(args) -> int:
    from gps_denied_nav.core.map_raster import load_geotiff
    from gps_denied_nav.sim.clip import write_clip
    from gps_denied_nav.sim.flight import FlightConfig, simulate_flight

    raster = load_geotiff(args.ortho)
    flight = simulate_flight(raster, FlightConfig(seed=args.seed, duration_s=args.duration_s,
                                                  altitude_agl_m=args.altitude_agl_m, appearance=args.appearance),
                             progress=_progress("render frames"))
    write_clip(flight, args.out, progress=_progress("write clip"))
    print(f"flight clip {args.out}: {args.duration_s:.0f} s")
    return 0


def cmd_run(args) -> int:
    from gps_denied_nav.replay.graph import GraphHost
    from gps_denied_nav.replay.process_host import ProcessGraphHost

    overrides = {"corpus_dir": args.corpus} if args.corpus else {}
    if args.use_sim_time:
        overrides["use_sim_time"] = True
    host = (ProcessGraphHost if args.process_per_node else GraphHost)(args.params, overrides).start()
    try:
        host.wait_until_active()
        print("graph active; Ctrl-C to stop", file=sys.stderr)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        host.close()
    return 0


def cmd_replay(args) -> int:
    from gps_denied_nav.replay.session import replay

    report = replay(args.clip, args.corpus, args.out, rate=args.rate, params_file=args.params,
                    record_debug_images=args.record_debug_images, domain_id=args.domain_id, mode=args.mode,
                    process_per_node=args.process_per_node, mavlink=args.mavlink or "", record=args.record or "")
    print(json.dumps({k: v for k, v in report.to_json_dict().items() if not isinstance(v, dict)}, indent=2))
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


def cmd_recording_recover(args) -> int:
    from gps_denied_nav.recording.salvage import recover_recording

    for result in recover_recording(args.path):
        if not result.recovered:
            print(f"{result.split_dir.name}: complete, left as it is")
            continue
        span = (result.last_time_ns - result.first_time_ns) * 1e-9 if result.first_time_ns is not None else 0.0
        print(f"{result.split_dir.name}: recovered {sum(result.messages_per_topic.values())} messages over "
              f"{span:.1f} s ({result.reason}); the damaged original is kept as {result.crashed_dir}")
        for skipped in result.skipped:
            print(f"  skipped: {skipped}")
    return 0


def cmd_recording_info(args) -> int:
    from rosbags.highlevel import AnyReader

    from gps_denied_nav.recording.salvage import recording_bags
    from gps_denied_nav.replay.bag_types import typestore

    bags = recording_bags(args.path)
    with AnyReader(bags, default_typestore=typestore()) as reader:
        print(f"{args.path}: {len(bags)} bag(s), {(reader.end_time - reader.start_time) * 1e-9:.1f} s, "
              f"{reader.message_count} messages")
        for conn in sorted(reader.connections, key=lambda c: c.topic):
            print(f"  {conn.topic:45s} {conn.msgtype:50s} {conn.msgcount}")
    return 0


def cmd_diagnostics(args) -> int:
    from gps_denied_nav.replay.inspect_bag import format_diagnostics

    print(format_diagnostics(args.bag, with_rates=args.rates))
    return 0


def cmd_demo(args) -> int:
    from gps_denied_nav.replay.demo import run_demo

    report = run_demo(Path(args.out), seed=args.seed, rate=args.rate, duration_s=args.duration_s, force=args.force,
                      domain_id=args.domain_id, mode=args.mode)
    return 0 if report["pass"] else 1


MODE_HELP = ("lockstep (default, for scoring): each frame waits until the graph is done with the previous one, so "
             "figures do not depend on the machine's speed or load; realtime: the clip's own pace, to measure "
             "latency and drops")
DOMAIN_HELP = ("DDS domain of the replayed graph (default: a private random one, so a replay never mixes with a "
               "live graph; set it to watch the replay in rviz with the same ROS_DOMAIN_ID)")


def _handler(module: str, name: str):
    """A subcommand whose handler lives in ``module``, imported only when the subcommand runs."""
    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gdn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("provision", help="cut a GeoTIFF into a tile corpus with descriptors and a FAISS index")
    p.add_argument("--ortho", required=True, help="georeferenced orthophoto (GeoTIFF, any CRS rasterio reads)")
    p.add_argument("--out", required=True, help="corpus directory to write")
    p.add_argument("--tile-size-m", type=float, default=150.0)
    p.add_argument("--stride-m", type=float, default=50.0)
    p.add_argument("--tile-px", type=int, default=320)
    terrain = p.add_argument_group("terrain (exactly one; heights WGS84 ellipsoidal, like NavSatFix.altitude)")
    terrain.add_argument("--dem", help="DEM GeoTIFF of the area (any CRS rasterio reads; band 1 in metres)")
    terrain.add_argument("--ground-alt-m", type=float, help="flat ground at this height (m)")
    terrain.add_argument("--assume-sea-level", action="store_true", help="the ground is at the ellipsoid (0 m)")
    terrain.add_argument("--geoid-offset-m", type=float, default=0.0,
                         help="geoid separation N added to a DEM in orthometric (geoid) heights")
    terrain.add_argument("--terrain-sigma-m", type=float, default=None,
                         help="vertical 1-sigma of the terrain heights (default 3 m for a DEM, 2 m for a flat height)")
    p.add_argument("--map-sigma-m", type=float, default=None,
                   help="horizontal 1-sigma of the map's georegistration, added to every fix (default: max(1 m, "
                        "4 source pixels); give the orthophoto's stated absolute accuracy)")
    p.add_argument("--model", choices=("efficientnet-lite0-netvlad", "vgg16-netvlad"),
                   default="efficientnet-lite0-netvlad", help="global descriptor: the default EfficientNet-Lite0 "
                   "NetVLAD, fitted to this map, or a trained VGG16-NetVLAD used as it is (needs --checkpoint)")
    p.add_argument("--checkpoint", help="converted VGG16-NetVLAD weights (gdn convert-netvlad) for --model "
                   "vgg16-netvlad")
    cli_provision.add_arguments(p)
    p.set_defaults(func=cmd_provision)
    cli_maps.add_parser(sub)  # fetch-map, fetch-dem: a map / DEM of any area from a tile server the user names
    cli_vpr.add_convert_parser(sub)  # convert-netvlad

    p = sub.add_parser("export-onnx", help="export the corpus' descriptor model to CORPUS/model.onnx for the "
                       "inference node's onnxruntime backend, checked against torch")
    p.add_argument("--corpus", required=True)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer; 17 parses on TensorRT 8.5+)")
    p.set_defaults(func=_handler("gps_denied_nav.core.onnx_export", "cmd_export_onnx"))
    cli_engine.add_parser(sub)
    cli_photos.add_parser(sub)  # ortho, locate, bag import

    p = sub.add_parser("simulate", help="render a flight clip bag over any GeoTIFF")
    p.add_argument("--ortho", required=True)
    p.add_argument("--out", required=True, help="bag path to write (MCAP)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-s", type=float, default=90.0)
    p.add_argument("--altitude-agl-m", type=float, default=120.0)
    p.add_argument("--appearance", default="as_mapped", help="season/weather of the frames: as_mapped, autumn, "
                   "overcast, cloud_shadows or low_sun (core/vpr_views.py)")
    p.set_defaults(func=cmd_simulate)

    cli_vpr.add_parser(sub)  # train-vpr, eval-retrieval

    p = sub.add_parser("run", help="host every node in one process (a Python component container)")
    p.add_argument("--params", required=True, action="append",
                   help="params YAML (params/gps_denied_nav.yaml); repeat to overlay, e.g. params/threads_orin.yaml")
    p.add_argument("--corpus", help="override corpus_dir of every node")
    p.add_argument("--use-sim-time", action="store_true")
    p.add_argument("--process-per-node", action="store_true", help="each node in a process of its own, as ros2 "
                   "launch runs them (default: one process, each node on an executor thread of its own)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="run the graph on a flight clip and score it")
    p.add_argument("clip", help="flight clip bag (MCAP or sqlite3), or a recording of recorder_node")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    p.add_argument("--params", action="append", help="params YAML (default: the package's "
                   "params/gps_denied_nav.yaml); repeat to overlay, e.g. params/threads_orin.yaml")
    p.add_argument("--record-debug-images", action="store_true")
    p.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep", help=MODE_HELP)
    p.add_argument("--process-per-node", action="store_true",
                   help="run each node in a process of its own, as ros2 launch does (default: one process)")
    p.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    p.add_argument("--mavlink", metavar="URL", help="also send the fused fix as MAVLink GPS_INPUT (fc_bridge_node) "
                   "to this pymavlink endpoint, e.g. udpout:127.0.0.1:14550 (an autopilot SITL or a listener)")
    p.add_argument("--record", metavar="DIR", help="also run the flight data recorder (recorder_node) into DIR, "
                   "as on the aircraft")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("recording", help="flight recordings (recorder_node): recover a crashed split, list one")
    rec = p.add_subparsers(dest="recording_command", required=True)
    q = rec.add_parser("recover", help="turn the split a crash or power cut left open into a complete bag "
                       "(the damaged original is kept beside it as SPLIT.crashed)")
    q.add_argument("path", help="a recording (flight_YYYYmmdd_HHMMSS) or one of its splits")
    q.set_defaults(func=cmd_recording_recover)
    q = rec.add_parser("info", help="topics, types, message counts and duration of a recording or bag")
    q.add_argument("path")
    q.set_defaults(func=cmd_recording_info)

    p = sub.add_parser("diagnostics", help="the last /diagnostics status of every node in a recorded bag")
    p.add_argument("bag", help="e.g. OUT_DIR/outputs.mcap from gdn replay")
    p.add_argument("--rates", action="store_true", help="also show the per-counter rates")
    p.set_defaults(func=cmd_diagnostics)

    p = sub.add_parser("demo", help="generate the demo world and flight, provision, replay, report")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--duration-s", type=float, default=90.0)
    p.add_argument("--force", action="store_true", help="regenerate world, clip and corpus")
    p.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep", help=MODE_HELP)
    p.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"gdn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
