"""`samtrack weights list|download`: Meta's released checkpoints and the detectors' hub files in the local cache."""

from __future__ import annotations


def add_weights_parser(sub) -> None:
    from ..paths import dir_to_write, existing_dir

    weights = sub.add_parser("weights", help="Meta's released checkpoints and the detectors' weights")
    weights = weights.add_subparsers(dest="action", required=True)
    wl = weights.add_parser("list", help="list models and whether their checkpoint is cached")
    wl.add_argument("--cache-dir", type=existing_dir("cache directory", "`samtrack weights download NAME --cache-dir "
                                                                        "DIR` makes one"),
                    help="cache directory (default: $XDG_CACHE_HOME/samtrack/checkpoints)")
    wl.set_defaults(func=run_list)
    wd = weights.add_parser("download", help="download a model's checkpoint (or a detector's files) into the cache")
    wd.add_argument("name", help="model name, e.g. sam2.1_hiera_t, or detector name, e.g. owlv2-base (see "
                                 "`samtrack weights list`)")
    wd.add_argument("--base-url", help="download from this directory URL instead of Meta's (for a detector: this "
                                       "Hugging Face hub mirror)")
    wd.add_argument("--cache-dir", type=dir_to_write("cache directory"), help="cache directory")
    wd.add_argument("--force", action="store_true", help="download again even if cached")
    wd.add_argument("--quiet", action="store_true", help="no progress bar")
    wd.set_defaults(func=run_download)


def _directory(args):
    from pathlib import Path

    return Path(args.cache_dir) if args.cache_dir else None


def run_list(args) -> int:
    from ..models import detectors, weights

    print(f"{'model':16s} {'checkpoint file':26s} cached")
    for m in weights.list_models(_directory(args)):
        state = f"yes, {m.path}" if m.present else "no (samtrack weights download NAME)"
        print(f"{m.spec.name:16s} {m.spec.filename:26s} {state}")
    print(f"\n{'detector':20s} {'hub repository':36s} cached")
    for spec in detectors.DETECTORS.values():
        snapshot = detectors.cached_snapshot(spec.name, _directory(args))
        state = f"yes, {snapshot}" if snapshot else "no (samtrack weights download NAME)"
        print(f"{spec.name:20s} {spec.repo:36s} {state}")
    return 0


def run_download(args) -> int:
    from ..models import detectors, weights

    if detectors.is_detector(args.name):
        print(detectors.download_detector(args.name, args.base_url, _directory(args), force=args.force,
                                          progress=not args.quiet))
    else:
        print(weights.download(args.name, args.base_url, _directory(args), force=args.force,
                               progress=not args.quiet))
    return 0
