"""Request parsing without a daemon: each malformed request gets the code docs/protocol.md gives it, and a
request the doc calls valid parses. Fast: the mutation check (bench/mutations.py) leans on it."""

from __future__ import annotations

import json

import pytest

from tracker import protocol as P


def _frame(**envelope) -> bytes:
    return json.dumps({"v": 1, "id": 7, "op": "ping", "args": {}, **envelope}).encode()


def _code(*parts: bytes) -> str:
    with pytest.raises(P.ProtocolError) as e:
        P.parse_request(list(parts))
    assert e.value.message
    return e.value.code


def test_a_valid_request_parses():
    rid, op, args, frames = P.parse_request([_frame(op="add_box", args={"object": 2, "box": [1, 2, 30, 40],
                                                                         "points": [[3, 4]], "labels": [1]})])
    assert (rid, op, frames) == (7, "add_box", []) and args.object == 2 and args.labels == [1]
    rid, op, args, _ = P.parse_request([json.dumps({"v": 1, "id": "a", "op": "ping"}).encode()])  # args omitted
    assert (rid, op) == ("a", "ping")


@pytest.mark.parametrize("envelope", [{"extra": 1}, {"args": {}, "stream": "x"}, {"ok": True}])
def test_an_unknown_envelope_field_is_a_bad_request(envelope):
    assert _code(_frame(**envelope)) == "bad_request"


def test_an_unknown_args_field_is_a_bad_request():
    assert _code(_frame(args={"surprise": 1})) == "bad_request"
    assert _code(_frame(op="remove_object", args={"object": 1, "objects": [2]})) == "bad_request"


@pytest.mark.parametrize("args", [
    {"object": 1, "box": [1, 2, 30, 40], "points": [[3, 4]]},  # points without labels
    {"object": 1, "box": [1, 2, 30, 40], "labels": [1]},  # labels without points
    {"object": 1, "box": [1, 2, 30, 40], "points": [[3, 4], [5, 6]], "labels": [1]},  # one label short
])
def test_add_box_points_and_labels_come_together(args):
    assert _code(_frame(op="add_box", args=args)) == "bad_request"


def test_add_points_needs_one_label_per_point():
    assert _code(_frame(op="add_points", args={"object": 1, "points": [[1, 2]]})) == "bad_request"
    assert _code(_frame(op="add_points", args={"object": 1, "points": [[1, 2]], "labels": [1, 0]})) == "bad_request"


def test_strict_types_are_not_coerced():
    for args in ({"object": "1"}, {"object": 1.0}, {"object": True}):
        assert _code(_frame(op="remove_object", args=args)) == "bad_request", args
    assert _code(_frame(op="add_points", args={"object": 1, "points": [[1, 2]], "labels": ["1"]})) == "bad_request"
    assert _code(_frame(v="1")) == "bad_request"
