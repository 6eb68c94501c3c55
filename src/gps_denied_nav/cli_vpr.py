"""``gdn convert-netvlad``, ``gdn train-vpr``, ``gdn eval-retrieval``: the retrieval model, trained on the region
and scored on a clip. Heavy imports wait for the handler, so ``gdn --help`` stays instant."""
from __future__ import annotations

from pathlib import Path


def _progress(stage: str):
    from gps_denied_nav.replay.session import print_progress

    return lambda done, total: print_progress(stage, done, total)


def cmd_convert_netvlad(args) -> int:
    from gps_denied_nav.core.netvlad_convert import convert_checkpoint

    result = convert_checkpoint(args.checkpoint, args.out, args.layout)
    print(f"{args.out}: {result.model_id} ({result.descriptor_dim}-d), {result.layout} layout, from "
          f"{args.checkpoint} (sha256 {result.provenance['source_sha256'][:12]}...)")
    print(f"provision with it: gdn provision --model vgg16-netvlad --checkpoint {args.out} ...")
    return 0


def cmd_train_vpr(args) -> int:
    from gps_denied_nav.core.vpr_corpus import TrainVprConfig, train_vpr
    from gps_denied_nav.replay.session import print_progress

    config = TrainVprConfig(views_per_tile=args.views_per_tile, val_views_per_tile=args.val_views_per_tile,
                            epochs=args.epochs, held_out_appearance=args.held_out_appearance,
                            colour_jitter=args.colour_jitter, negative_strides=args.negative_strides,
                            camera_span_of_tile=args.camera_span, whitened_dim=args.whitened_dim, seed=args.seed,
                            device=args.device)
    record = train_vpr(args.corpus, config, args.ortho, progress=print_progress)
    for name in ("recall_before", "recall_after"):
        for split, recall in record[name].items():
            print(f"{name:14s} {split:9s} " + "  ".join(f"{k} {v:.2f}" for k, v in recall.items()))
    print(f"whitening: {record['whitening']}")
    print(f"training {record['seconds']['training']:.0f} s, total {record['seconds']['total']:.0f} s; "
          f"record: {Path(args.corpus) / 'train_vpr.json'}")
    return 0


def cmd_eval_retrieval(args) -> int:
    from gps_denied_nav.replay.eval_retrieval import evaluate_clip, summary_table

    result = evaluate_clip(args.clip, args.corpus, args.out, args.prior_radius_m, args.prior_sigma_m, args.seed,
                           progress=_progress("describe frames"), verify_top=args.verify_top)
    print(summary_table(result))
    print(f"{result['queries']} queries over {result['tiles']} tiles; {Path(args.out) / 'retrieval.json'}")
    return 0


def add_convert_parser(sub) -> None:
    p = sub.add_parser("convert-netvlad", help="convert a VGG16-NetVLAD checkpoint (pytorch-NetVlad or the seed "
                       "system) into this project's model file, for gdn provision --model vgg16-netvlad")
    p.add_argument("checkpoint", help="source checkpoint (.pth.tar / .pt); read weights-only, never unpickling code")
    p.add_argument("--out", required=True, help="model file to write (MODEL.pt)")
    p.add_argument("--layout", choices=("auto", "pytorch-netvlad", "seed"), default="auto",
                   help="key layout of the source (auto: 'seed' when it has pca.* keys, else pytorch-netvlad)")
    p.set_defaults(func=cmd_convert_netvlad)


def add_parser(sub) -> None:
    """Register ``train-vpr`` and ``eval-retrieval`` on ``gdn``'s subparsers."""
    p = sub.add_parser("train-vpr", help="fine-tune the corpus' descriptor model on views of its own map and "
                       "re-index the corpus (resumable: CORPUS/.train_vpr/)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--ortho", help="the corpus' map GeoTIFF (default: the one its manifest names)")
    p.add_argument("--views-per-tile", type=int, default=24)
    p.add_argument("--val-views-per-tile", type=int, default=4)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--held-out-appearance", default="autumn", help="never trained on; reported on its own")
    p.add_argument("--colour-jitter", type=float, default=0.0,
                   help="share of training views also given a random hue/saturation jitter (0: none)")
    p.add_argument("--negative-strides", type=float, default=1.25,
                   help="tiles further than this many strides from a training view are its negatives")
    p.add_argument("--camera-span", type=float, default=0.5,
                   help="training views' cameras stand over this central share of each tile's side")
    p.add_argument("--whitened-dim", type=int, default=256, help="PCA whitening to this many dimensions (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.set_defaults(func=cmd_train_vpr)

    p = sub.add_parser("eval-retrieval", help="recall@1/5/10/20 of the corpus' retrieval on a clip's frames "
                       "(global and prior-narrowed, beside the random baseline): OUT/retrieval.json")
    p.add_argument("clip", help="a flight clip with /ground_truth/fix and /ground_truth/odom (gdn simulate)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--prior-radius-m", type=float, default=200.0)
    p.add_argument("--prior-sigma-m", type=float, default=50.0, help="error of the prior position, 1-sigma per axis")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verify-top", type=int, default=20, help="also score the global ranking after the matcher "
                   "verifies its top N tiles on each frame, as the graph does when lost (0: not)")
    p.set_defaults(func=cmd_eval_retrieval)
