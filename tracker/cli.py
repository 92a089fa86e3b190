"""The `samtrack` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.errors import SinkError, SourceError

from .errors import SamtrackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="samtrack", description="Real-time streaming SAM2 tracker")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    weights = sub.add_parser("weights", help="Meta's released checkpoints").add_subparsers(dest="action", required=True)
    wl = weights.add_parser("list", help="list models and whether their checkpoint is cached")
    wl.add_argument("--cache-dir", help="cache directory (default: $XDG_CACHE_HOME/samtrack/checkpoints)")
    wd = weights.add_parser("download", help="download a model's checkpoint into the cache")
    wd.add_argument("name", help="model name, e.g. sam2.1_hiera_t (see `samtrack weights list`)")
    wd.add_argument("--base-url", help="download from this directory URL instead of Meta's")
    wd.add_argument("--cache-dir", help="cache directory")
    wd.add_argument("--force", action="store_true", help="download again even if cached")
    wd.add_argument("--quiet", action="store_true", help="no progress bar")

    from .bench_cmd import add_bench_parser
    from .client_cmd import add_client_parsers
    from .demo_cmd import add_demo_parser
    from .export_cmd import add_export_parser
    from .keys_cmd import add_keys_parser
    from .serve_cmd import add_serve_parser
    from .sources_cmd import add_sources_parser
    from .track_cmd import add_track_parser
    from .view_cmd import add_view_parser

    add_serve_parser(sub)
    add_client_parsers(sub)
    add_demo_parser(sub)
    add_keys_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
    add_track_parser(sub)
    add_sources_parser(sub)
    add_view_parser(sub)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) if hasattr(args, "func") else _weights(args)
    except (SamtrackError, SourceError, SinkError) as e:
        print(f"samtrack: error: {e}", file=sys.stderr)
        return 2
    except (TimeoutError, ConnectionError) as e:
        print(f"samtrack: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _weights(args) -> int:
    from pathlib import Path

    from . import weights

    directory = Path(args.cache_dir) if args.cache_dir else None
    if args.action == "list":
        for m in weights.list_models(directory):
            state = f"cached  {m.path}" if m.present else "-"
            print(f"{m.spec.name:16s} {m.spec.filename:26s} {state}")
        return 0
    path = weights.download(args.name, args.base_url, directory, force=args.force, progress=not args.quiet)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
