"""`samtrack keys generate` / `samtrack keys authorize`: CurveZMQ key files."""

from __future__ import annotations


def add_keys_parser(sub) -> None:
    from ..paths import dir_to_write
    from .args import KEY_FILE

    keys_dir = dir_to_write("key directory")
    p = sub.add_parser("keys", help="CurveZMQ keys").add_subparsers(dest="action", required=True)
    g = p.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (0600)")
    g.add_argument("directory", type=keys_dir, help="where the key files go (created if missing)")
    g.add_argument("--name", default="server", help="key name, e.g. server or a client's name")
    g.set_defaults(func=run_generate)
    a = p.add_parser("authorize", help="allow a client: copy its public key into the allowed-clients directory")
    a.add_argument("public_key", type=KEY_FILE, help="the client's public .key file")
    a.add_argument("directory", type=keys_dir, help="the allowed-clients directory (created if missing)")
    a.set_defaults(func=run_authorize)


def run_generate(args) -> int:
    from ..protocol.curve import generate_keys

    public, secret = generate_keys(args.directory, args.name)
    print(f"public key  {public}\nsecret key  {secret}  (mode 0600: keep it private)")
    return 0


def run_authorize(args) -> int:
    from ..protocol.curve import authorize_client

    print(authorize_client(args.public_key, args.directory))
    return 0
