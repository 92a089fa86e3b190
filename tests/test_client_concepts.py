"""The Python client's concept requests and lifecycle events, against sockets of this test's own (the daemon's side
is tested with the daemon)."""

from __future__ import annotations

import json
import threading

import zmq

from tracker.client import Client, Event, Events
from tracker.client.spawn import free_port


def test_concept_requests_carry_only_what_was_given():
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    router.bind(endpoint)
    seen = []

    def serve(n: int) -> None:
        for _ in range(n):
            if not router.poll(30_000):
                return
            peer, body = router.recv_multipart()
            req = json.loads(body)
            seen.append((req["op"], req.get("args", {})))
            router.send_multipart([peer, json.dumps({"v": 1, "id": req["id"], "ok": True,
                                                     "result": {"concepts": []}}).encode()])

    t = threading.Thread(target=serve, args=(4,), daemon=True)
    t.start()
    try:
        with Client(endpoint, timeout=30, stream="cam") as c:
            c.add_concept("forklift")
            c.add_concept("person", every_s=2.0, threshold=0.0, max_objects=4)
            c.remove_concept("forklift")
            assert c.list_concepts() == {"concepts": []}
        t.join(30)
    finally:
        router.close(0)
    assert seen == [("add_concept", {"text": "forklift", "stream": "cam"}),
                    ("add_concept", {"text": "person", "every_s": 2.0, "threshold": 0.0, "max_objects": 4,
                                     "stream": "cam"}),
                    ("remove_concept", {"text": "forklift", "stream": "cam"}),
                    ("list_concepts", {"stream": "cam"})]


def test_events_of_one_stream_only():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub.bind(endpoint)
    try:
        with Events(endpoint, stream="cam") as events:
            got = None
            for frame in range(200):  # until the subscription is through (a SUB joins late): bounded, 20 s
                for stream in ("cam2", "cam"):
                    body = {"v": 1, "type": "event", "seq": frame, "kind": "appeared", "stream": stream,
                            "frame": frame, "object": 3, "label": "forklift", "score": 0.5}
                    pub.send_multipart([f"events.{stream}".encode(), json.dumps(body).encode()])
                got = events.recv(0.1)
                if got is not None:
                    break
            assert isinstance(got, Event) and got.stream == "cam" and got.kind == "appeared"
            assert (got.object, got.label, got.score) == (3, "forklift", 0.5)
    finally:
        pub.close(0)
