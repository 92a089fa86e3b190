"""`samtrack state export|import|show`: a stream's objects moved between daemons, or looked at."""

from __future__ import annotations

import json


def add_state_parser(sub) -> None:
    from ..paths import existing_file, file_to_write
    from ..protocol import DEFAULT_COMMANDS
    from .client import add_curve_options

    p = sub.add_parser("state", help="a stream's tracked objects: export from a daemon, import into another, show")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write a running daemon's stream state (objects, their prompted "
                                          "memories) to FILE")
    i = actions.add_parser("import", help="load FILE into a running daemon's stream (same model and weights): its "
                                          "objects replace the stream's")
    e.add_argument("file", type=file_to_write("state file", "cam.state"), help="the state file to write")
    i.add_argument("file", type=existing_file("state file", "`samtrack state export` writes one"),
                   help="a state file (`samtrack state export` writes one)")
    for q in (e, i):
        q.add_argument("--commands", default=DEFAULT_COMMANDS, help="the daemon's ROUTER endpoint")
        q.add_argument("--stream", help="the stream (needed when the daemon has several)")
        q.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the reply")
        add_curve_options(q)
    e.set_defaults(func=run_export)
    i.set_defaults(func=run_import)
    s = actions.add_parser("show", help="print what a state file holds (model, objects, frames)")
    s.add_argument("file", type=existing_file("state file", "a daemon keeps them in its state directory"),
                   help="a state file (exported, or in a daemon's state directory)")
    s.set_defaults(func=run_show)


def _client(args):
    from .client import connect

    return connect(args)


def run_export(args) -> int:
    from pathlib import Path

    from ..daemon.atomic import write_atomically  # (no torch: a client command)

    path = Path(args.file)
    with _client(args) as c:
        result, data = c.export_state()
    write_atomically(path, data)
    print(f"{path}: {len(result['objects'])} object(s) {result['objects']}, {result['bytes']} bytes")
    return 0


def run_import(args) -> int:
    from pathlib import Path

    from ..errors import SamtrackError

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SamtrackError(f"cannot read {path}: {e.strerror or e}") from e
    with _client(args) as c:
        result = c.import_state(data)
    print(f"imported {len(result['objects'])} object(s) {result['objects']}; frames continue at "
          f"{result['next_frame']}")
    return 0


def run_show(args) -> int:
    from pathlib import Path

    from ..core.state import read_meta
    from ..errors import SamtrackError

    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise SamtrackError(f"cannot read {args.file}: {e.strerror or e}") from e
    meta, tensors = read_meta(data)
    meta["bytes"] = len(data)
    meta["tensors"] = len(tensors)
    print(json.dumps(meta, indent=2))
    return 0
