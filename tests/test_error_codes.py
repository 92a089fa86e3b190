"""The error codes a reply may carry, read from the code (not written down here): every code the daemon, the
broker and the viewer can send is in tracker.protocol.ERROR_CODES and has a row in docs/protocol.md's table,
and those list nothing else."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tracker import protocol as P

ROOT = Path(__file__).resolve().parents[1]
# The rooms whose code answers requests (parsing, serving, routing, relaying to a page).
REPLYING_ROOMS = ("protocol", "daemon", "broker", "viewer")
# Calls that carry a code: callee name -> position of the code among its arguments (or keyword `code`).
CODE_CALLS = {"ProtocolError": 0, "reply_error": 1, "error_reply": 1}


def _parsed(paths) -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text(), str(p))) for p in sorted(paths)]


def _name(node: ast.expr) -> str | None:
    """`X` or `module.X` -> "X"."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


@dataclass(frozen=True)
class ErrorClasses:
    """SamtrackError and its subclasses in tracker/, as parsed: each one's code and its subclasses."""

    code: dict[str, str]  # class -> its `code` (inherited when it sets none)
    below: dict[str, set[str]]  # class -> itself and every class derived from it

    @classmethod
    def parse(cls) -> ErrorClasses:
        bases, codes = {}, {}
        for _, tree in _parsed((ROOT / "tracker").rglob("*.py")):
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    bases[node.name] = {_name(b) for b in node.bases}
                    codes[node.name] = next((s.value.value for s in node.body if isinstance(s, ast.Assign)
                                             and [_name(t) for t in s.targets] == ["code"]
                                             and isinstance(s.value, ast.Constant)), None)

        def ancestry(c: str) -> list[str]:  # c, then its bases' ancestries
            return [c, *(a for b in sorted(bases.get(c, ()) & bases.keys()) for a in ancestry(b))]

        family = {c for c in bases if "SamtrackError" in ancestry(c)}
        code = {c: next(codes[a] for a in ancestry(c) if codes.get(a) is not None) for c in family}
        return cls(code, {c: {d for d in family if c in ancestry(d)} for c in family})


def _caught(handler: ast.ExceptHandler) -> list[str]:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return [_name(t) for t in types if t is not None]


def _reads_code(handler: ast.ExceptHandler) -> bool:
    """Whether the handler reads the caught exception's `.code` (turns it into a reply)."""
    return handler.name is not None and any(isinstance(a, ast.Attribute) and a.attr == "code"
                                            and _name(a.value) == handler.name
                                            for s in handler.body for a in ast.walk(s))


def _strings_assigned_to_code(fn: ast.FunctionDef) -> list[tuple[str, int]]:
    out = []
    for a in ast.walk(fn):
        if isinstance(a, ast.Assign):
            for target in a.targets:
                pairs = (zip(target.elts, a.value.elts, strict=True)
                         if isinstance(target, ast.Tuple) and isinstance(a.value, ast.Tuple) else [(target, a.value)])
                out += [(v.value, a.lineno) for t, v in pairs
                        if _name(t) == "code" and isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return out


def sent_codes() -> tuple[dict[str, list[str]], list[str]]:
    """(code -> where it is sent, call sites whose code cannot be read), from the replying rooms: the code
    argument of ProtocolError(...), reply_error(...) and error_reply(...); strings assigned to a variable named
    `code` in a function; and, where an exception's `.code` is read, the codes of the SamtrackError subclasses
    that handler catches (and of their subclasses)."""
    errors = ErrorClasses.parse()
    sent, unreadable = defaultdict(list), []
    paths = [p for room in REPLYING_ROOMS for p in (ROOT / "tracker" / room).rglob("*.py")]
    for where, tree in _parsed(paths):
        for node in ast.walk(tree):
            at = f"{where}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and _name(node.func) in CODE_CALLS:
                i = CODE_CALLS[_name(node.func)]
                arg = next((k.value for k in node.keywords if k.arg == "code"),
                           node.args[i] if len(node.args) > i else None)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    sent[arg.value].append(at)
                elif arg is None or _name(arg) != "code":  # a variable `code` is fed by the sources read here
                    unreadable.append(f"{at}: {ast.unparse(node)[:80]}")
            elif isinstance(node, ast.FunctionDef):
                for code, line in _strings_assigned_to_code(node):
                    sent[code].append(f"{where}:{line}")
            elif isinstance(node, ast.ExceptHandler) and _reads_code(node):
                for caught in _caught(node):
                    for c in errors.below.get(caught, ()):
                        sent[errors.code[c]].append(f"{at} ({c})")
    return dict(sent), unreadable


def documented_codes() -> set[str]:
    table = (ROOT / "docs" / "protocol.md").read_text().split("### Error codes", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))


def test_every_code_the_daemon_broker_or_viewer_can_send_is_listed_and_documented():
    sent, unreadable = sent_codes()
    assert unreadable == [], f"calls whose error code cannot be read (pass it as a literal): {unreadable}"
    unlisted = {c: w for c, w in sent.items() if c not in P.ERROR_CODES}
    assert not unlisted, f"codes sent but not in tracker.protocol.ERROR_CODES: {unlisted}"
    assert set(sent) == P.ERROR_CODES, f"listed but sent nowhere: {sorted(P.ERROR_CODES - set(sent))}"
    documented = documented_codes()
    assert documented == P.ERROR_CODES, (f"not in docs/protocol.md's table: {sorted(P.ERROR_CODES - documented)}; "
                                         f"documented but not sent: {sorted(documented - P.ERROR_CODES)}")


def test_the_discovery_reads_each_kind_of_source():
    """The tracker's own errors (by the handler's except clause), literals of each call, the `internal` fallback
    and the viewer's replies to its page are all found where they are."""
    sent, _ = sent_codes()
    where = {c: " ".join(w) for c, w in sent.items()}
    assert "tracker/daemon/commands.py" in where["bad_prompt"] and "(PromptError)" in where["bad_prompt"]
    assert "(UnknownObjectError)" in where["unknown_object"] and "(FrameWindowError)" in where["frame_out_of_window"]
    assert "tracker/protocol/requests.py" in where["bad_json"] and "tracker/protocol/masks.py" in where["bad_mask"]
    assert "tracker/broker/broker.py" in where["stream_unavailable"]
    assert "tracker/daemon/commands.py" in where["internal"]
    assert "tracker/viewer/server.py" in where["unreachable"] and "tracker/viewer/server.py" in where["timeout"]


def test_each_code_has_one_row():
    """docs/protocol.md listed `unreachable` and `timeout` twice."""
    table = (ROOT / "docs" / "protocol.md").read_text().split("### Error codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert len(rows) == len(set(rows)) == len(P.ERROR_CODES), sorted(rows)
