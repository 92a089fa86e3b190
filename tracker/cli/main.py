"""The `samtrack` command line: one parser, one subcommand module each, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
from typing import NoReturn

from pipelines.errors import SinkError, SourceError

from ..errors import SamtrackError


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand's parser (path options checked as they are parsed: tracker/paths.py)."""
    parser = argparse.ArgumentParser(prog="samtrack", description="Real-time streaming SAM2 tracker")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    from .bench import add_bench_parser
    from .broker import add_broker_parser
    from .client import add_client_parsers
    from .demo import add_demo_parser
    from .doctor import add_doctor_parser
    from .export import add_export_parser
    from .keys import add_keys_parser
    from .replay import add_replay_parser
    from .segment import add_segment_parser
    from .serve import add_serve_parser
    from .sources import add_sources_parser
    from .state import add_state_parser
    from .track import add_track_parser
    from .view import add_view_parser
    from .weights import add_weights_parser

    add_serve_parser(sub)
    add_broker_parser(sub)
    add_client_parsers(sub)
    add_demo_parser(sub)
    add_doctor_parser(sub)
    add_keys_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
    add_track_parser(sub)
    add_segment_parser(sub)
    add_replay_parser(sub)
    add_sources_parser(sub)
    add_state_parser(sub)
    add_view_parser(sub)
    add_weights_parser(sub)
    return parser


def main(argv: list[str] | None = None, process: bool = False) -> int:
    """Run one command; its exit code. process: this is the whole process (`entry`), which a daemon leaves at once
    when it has stopped."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_sam2_chatter)
    code = _run(args)
    if process and getattr(args, "leave_at_once", False):
        leave(code)
    return code


def _sam2_chatter(record: logging.LogRecord) -> bool:
    """False for sam2's progress notes ("Computing image embeddings ...": INFO on the root logger), which are not
    samtrack's to show; --verbose keeps them."""
    from_sam2 = record.name == "root" and f"{os.sep}sam2{os.sep}" in record.pathname
    return record.levelno >= logging.WARNING or not from_sam2


def entry() -> NoReturn:
    """The `samtrack` command and `python -m tracker.cli`."""
    sys.exit(main(process=True))


def leave(code: int) -> NoReturn:
    """Exit now, without Python's finalization. For a daemon whose close() has returned (bounded by its stop
    budget): tearing down torch's modules takes most of a second on a small CPU, time a service manager's stop
    waits for and the process does not need. Logs and buffered output are flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    ctypes.CDLL(None).fflush(None)  # C stdio buffers of native libraries (GStreamer, OpenVINO)
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except (SamtrackError, SourceError, SinkError) as e:
        print(f"samtrack: error: {e}", file=sys.stderr)
        return 2
    except (TimeoutError, ConnectionError) as e:
        print(f"samtrack: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

