"""A detector's answer applied to a stream's tracker (tracker/daemon/concepting.py) on the frame it was computed on:
SAM's masks from boxes on a past frame without changing the tracker, new objects prompted on that frame with ids no
clicked object has, objects a client removes forgotten by their concept, the saved form; and the wire's concept
fields and events (tracker/protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_model
from tracker import protocol as P
from tracker.concepts.types import MAX_CONCEPT_OBJECTS, MAX_TEXT, ConceptError, ConceptSpec, Detection
from tracker.core.tracker import Tracker
from tracker.daemon import concepting
from tracker.daemon.commands import CommandHandler
from tracker.daemon.concepting import StreamConcepts
from tracker.daemon.detecting import DetectDone, DetectorHealth
from tracker.daemon.metrics import Metrics
from tracker.daemon.stream import Stream
from tracker.errors import FrameWindowError, NoDetectorError, TooManyConceptsError, UnknownConceptError
from tracker.protocol import messages

H, W = 96, 128
WINDOW = 4


@pytest.fixture(scope="module")
def model():
    return make_model(image_size=64)


def stepped(model, frames: int = 6) -> Tracker:
    """A tracker stepped over `frames` frames of noise, with clicked objects 1 and 5 prompted by masks in two
    corners of its second frame (a mask prompt is the output there: their masks on it are known)."""
    t = Tracker.from_sam2(model, backend="torch", precision="fp32", feature_window=WINDOW)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        t.step(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    t.add_mask(1, rect((0, 0, 30, 24)), frame_index=t.window[1])
    t.add_mask(5, rect((96, 64, 128, 96)), frame_index=t.window[1])
    return t


def rect(box) -> np.ndarray:
    m = np.zeros((H, W), bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = True
    return m


def done(frame: int, *boxes, text: str = "cup", score: float = 0.9) -> DetectDone:
    return DetectDone("s", frame, (text,), (H, W), tuple(Detection(b, score, text) for b in boxes), 12.0)


def apply(c: StreamConcepts, answer: DetectDone) -> tuple[int, ...]:
    """An answer applied and every object it found prompted; their ids."""
    assert c.apply(answer) is not None
    added = []
    while c.adding:
        added += c.add_waiting(1000).added
    return tuple(added)


class BoxMasks:
    """The tracker's masks_from_boxes replaced by each box's rectangle (random weights' masks mean nothing), the
    frames it was asked about kept."""

    def __init__(self, tracker: Tracker):
        self.frames: list[int] = []
        tracker.masks_from_boxes = self

    def __call__(self, frame, boxes):
        self.frames.append(frame)
        return [rect(b) for b in boxes]


def test_masks_from_boxes_change_nothing_and_equal_a_new_objects_box_prompt(model):
    t = stepped(model)
    frame = t.window[1]  # a past frame of the window
    def seen():
        return (t.objects, t.window, t.state_version, t.held_bytes(),
                {i: o.mask.copy() for i, o in t.result(frame).objects.items()})

    before = seen()
    masks = t.masks_from_boxes(frame, [(10, 10, 60, 50), (30, 30, 30, 40)])  # the second is empty: no prompt
    assert len(masks) == 2 and masks[1] is None and masks[0].shape == (H, W) and masks[0].dtype == bool
    after = seen()
    assert after[:4] == before[:4]
    assert before[4].keys() == after[4].keys() and all(np.array_equal(before[4][i], after[4][i]) for i in before[4])
    prompted = t.add_box(9, (10, 10, 60, 50), frame_index=frame)  # the oracle: a new object's box prompt there
    assert np.array_equal(prompted.objects[9].mask, masks[0])
    with pytest.raises(FrameWindowError):
        t.masks_from_boxes(t.window[0] - 1, [(10, 10, 60, 50)])


def test_an_answer_is_applied_on_its_frame_with_fresh_ids(model):
    t = stepped(model)
    boxes = BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", threshold=0.5, stream="s"))
    frame = t.window[1]
    applied = c.apply(done(frame, (40, 10, 80, 40), (0, 60, 20, 90)))
    assert boxes.frames == [frame] and applied.removed == () and c.adding
    assert t.objects == [1, 5] and c.take_events() == []  # prompted from the next turn on, a few a turn
    retracked = t.retracked_frames
    first = c.add_waiting(1)  # a budget of one re-tracked frame: one object this turn
    assert len(first.added) == 1 and first.frame == frame and t.retracked_frames - retracked == t.window[-1] - frame
    second = c.add_waiting(1)
    assert len(second.added) == 1 and not c.adding and c.add_waiting(1) is None
    added = first.added + second.added
    assert min(added) > 5 and set(added).isdisjoint({1, 5})  # never a clicked object's id
    assert set(t.objects) == {1, 5, *added}
    for obj_id in added:  # prompted on the answer's frame: present there and on every later frame
        assert obj_id in t.result(frame).objects and obj_id in t.result().objects
        assert obj_id not in t.result(t.window[0]).objects
    assert c.tags[added[0]] == messages.ObjectTag("cup", 0.9, "tentative") and 1 not in c.tags
    events = c.take_events()
    assert [(e.kind, e.frame, e.label) for e in events] == [("appeared", frame, "cup")] * 2
    assert c.take_events() == []
    assert apply(c, done(t.window[-1], (90, 60, 120, 90), score=0.4)) == ()  # under the concept's threshold
    assert c.calls == 2


def test_a_clients_new_object_on_a_waiting_found_objects_id_is_kept_and_the_found_one_dropped(model):
    """The viewer's "new object" takes the highest id it sees plus one: an id given to a found object that waits to
    be added; the client's object must stay as clicked, not be written over nor carry the concept."""
    t = stepped(model)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", stream="s"))
    frame = t.window[1]
    c.apply(done(frame, (40, 10, 80, 40)))
    assert c.adding
    pending = c.next_id - 1
    clicked = rect((0, 60, 20, 90))
    t.add_mask(pending, clicked, frame_index=t.window[-1])  # the client's click, before the turn that adds it
    assert c.add_waiting(1000) is None and not c.adding
    assert t.result(t.window[-1]).objects[pending].bbox == (0, 60, 19, 89) and pending not in c.tags  # the click's
    assert c.infos()[0].objects == [] and [e.kind for e in c.take_events()] == []


def test_an_answer_on_a_frame_that_left_the_window_changes_nothing(model):
    t = stepped(model, frames=WINDOW + 3)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", stream="s"))
    assert c.apply(done(t.window[0] - 1, (40, 10, 80, 40))) is None
    assert t.objects == [1, 5] and c.too_old == 1 and c.take_events() == []
    stats = c.detector_stats(DetectorHealth("omdet-turbo", True, 4321, 0, 0, None))
    assert stats.calls == 1 and stats.too_old == 1 and stats.lag_frames.max == WINDOW


def test_a_removed_object_is_forgotten_and_its_id_never_reused(model):
    t = stepped(model)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", stream="s"))
    (found,) = apply(c, done(t.window[1], (40, 10, 80, 40)))
    t.remove_object(found)  # a client's remove_object
    c.forget(found)
    assert found not in c.tags and c.infos()[0].objects == []
    (again,) = apply(c, done(t.window[1], (40, 10, 80, 40)))
    assert again > found


def test_remove_concept_removes_its_objects_with_events_and_the_state_round_trips(model):
    t = stepped(model)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", every=3, stream="s"))
    c.add(ConceptSpec("dog", stream="s"))
    (cup,) = apply(c, done(t.window[1], (40, 10, 80, 40)))
    c.take_events()
    saved = json.loads(json.dumps(c.to_dict()))
    back = StreamConcepts("s", t, "omdet-turbo")
    back.restore(saved)
    assert [i.text for i in back.infos()] == ["cup", "dog"] and back.infos()[0].every == 3
    assert back.tags == c.tags and back.next_id == c.next_id
    c.remove("cup")
    assert cup not in t.objects and cup not in c.tags
    assert [(e.kind, e.obj_id, e.label) for e in c.take_events()] == [("removed", cup, "cup")]
    with pytest.raises(UnknownConceptError):
        c.remove("cup")


def test_a_found_object_still_waiting_to_be_added_leaves_without_an_event_when_its_concept_goes(model):
    """An object waiting to be prompted was never announced (its `appeared` leaves when it is added): removing its
    concept, or lowering its max_objects, drops it without a `removed` for an id no subscriber saw, never adds it
    later, and never removes a client's object that took its id meanwhile."""
    t = stepped(model)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", stream="s"))
    (shown,) = apply(c, done(t.window[1], (40, 10, 80, 40)))
    c.apply(done(t.window[1], (40, 10, 80, 40), (0, 60, 20, 90), (40, 60, 70, 90)))  # one matched, two wait
    assert c.adding
    taken = c.next_id - 1  # a client's new object takes the id of one of them
    box = t.add_mask(taken, rect((100, 0, 120, 20)), frame_index=t.window[-1]).objects[taken].bbox
    c.take_events()
    c.remove("cup")
    assert [(e.kind, e.obj_id) for e in c.take_events()] == [("removed", shown)]
    assert not c.adding and c.add_waiting(1000) is None and c.take_events() == []
    assert t.objects == [1, 5, taken] and t.result().objects[taken].bbox == box and taken not in c.tags

    c.add(ConceptSpec("dog", max_objects=2, stream="s"))
    (dog,) = apply(c, done(t.window[1], (40, 10, 80, 40), text="dog"))
    c.apply(done(t.window[1], (40, 10, 80, 40), (0, 60, 20, 90), text="dog"))
    assert c.adding
    c.take_events()
    c.add(ConceptSpec("dog", max_objects=1, stream="s"))  # its newest object, still waiting, is beyond the limit
    assert c.take_events() == [] and not c.adding and c.add_waiting(1000) is None
    assert set(t.objects) == {1, 5, taken, dog} and c.infos()[0].objects == [dog]


def test_a_found_object_still_waiting_is_neither_listed_nor_saved(model):
    """Before its `appeared`, a found object is in no list_concepts reply nor in the saved concepts: a restart after
    a client took its id must not give the client's object to the concept."""
    t = stepped(model)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", stream="s"))
    c.apply(done(t.window[1], (40, 10, 80, 40)))
    assert c.adding
    waiting = c.next_id - 1
    assert c.infos()[0].objects == []
    t.add_mask(waiting, rect((100, 0, 120, 20)), frame_index=t.window[-1])  # a client's new object takes its id
    saved = json.loads(json.dumps(c.to_dict()))
    back = StreamConcepts("s", t, "omdet-turbo")
    back.restore(saved)  # as after a restart: the tracker's state has the client's object
    assert back.infos()[0].objects == [] and waiting not in back.tags and back.next_id == waiting + 1


def test_concept_limits_and_no_detector(model):
    t = stepped(model, frames=2)
    with pytest.raises(NoDetectorError, match="--detector NAME"):
        StreamConcepts("s", t, None).add(ConceptSpec("cup"))
    c = StreamConcepts("s", t, "omdet-turbo")
    for k in range(8):
        c.add(ConceptSpec(f"thing {k}"))
    c.add(ConceptSpec("thing 0", threshold=0.1))  # a text it has: new settings, not a new concept
    assert len(c.infos()) == 8 and c.infos()[0].threshold == 0.1
    with pytest.raises(TooManyConceptsError):
        c.add(ConceptSpec("one more"))


def test_concept_requests_on_the_wire():
    def args(**a):
        return P.parse_request([P.request(1, "add_concept", a)])[2]

    a = args(text="forklift", threshold=0)
    assert (a.every, a.every_s, a.threshold, a.max_objects) == (None, None, 0.0, 16)
    for bad in ({"text": ""}, {"text": "x" * 65}, {"text": "a", "every": 2, "every_s": 1.0},
                {"text": "a", "threshold": 2}, {"text": "a", "every": 0}, {"text": "a", "every_s": 0},
                {"text": "a", "max_objects": MAX_CONCEPT_OBJECTS + 1}):
        with pytest.raises(P.ProtocolError) as e:
            args(**bad)
        assert e.value.code == "bad_request", bad
    header = json.loads(messages.event_message("cam", 3, messages.Event("confirmed", 7, 12, "cup", 0.81234))[1])
    assert header == {"v": 1, "type": "event", "seq": 3, "kind": "confirmed", "stream": "cam", "frame": 7,
                      "object": 12, "label": "cup", "score": 0.8123}
    assert messages.event_message("cam", 0, messages.Event("lost", 1, 2, "cup", None))[0] == b"events.cam"


def handled(model) -> CommandHandler:
    """The daemon's request handling (parsing, routing, the op) of one stream "s" whose concepts have a detector."""
    from pipelines.open import open_source

    t = stepped(model, frames=2)
    st = Stream("s", open_source("test:"), t, concepts=StreamConcepts("s", t, "omdet-turbo"))
    return CommandHandler({"s": st}, lambda st: None, Metrics(), lambda name: 0, lambda: None)


def ask(handler: CommandHandler, op: str, **args) -> dict:
    """One request's reply, as the daemon answers it."""
    return json.loads(handler.handle([P.request(1, op, args)]).reply)


def test_a_concept_at_the_limits_is_served_and_one_past_them_refused(model):
    """The wire's limits are the concept's own (one definition): add_concept at MAX_TEXT characters and
    MAX_CONCEPT_OBJECTS objects makes the concept; one past either is a bad_request naming the field and the limit."""
    handler = handled(model)
    text = "x" * MAX_TEXT
    reply = ask(handler, "add_concept", text=text, max_objects=MAX_CONCEPT_OBJECTS)
    assert reply["ok"], reply
    concept = reply["result"]["concept"]
    assert (concept["text"], concept["max_objects"]) == (text, MAX_CONCEPT_OBJECTS)
    for field, limit, args in (("text", MAX_TEXT, {"text": "x" * (MAX_TEXT + 1)}),
                               ("max_objects", MAX_CONCEPT_OBJECTS,
                                {"text": "cup", "max_objects": MAX_CONCEPT_OBJECTS + 1})):
        reply = ask(handler, "add_concept", **args)
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", reply
        assert f"{field}:" in reply["error"]["message"] and str(limit) in reply["error"]["message"], reply
    assert [c.text for c in handler.streams["s"].concepts.infos()] == [text]


def test_a_concepts_text_without_control_or_format_characters_and_stripped(model):
    """add_concept refuses a text of control or format characters only (a tokenizer yields nothing for it), or with
    one inside, naming the field and what it may be; surrounding whitespace is dropped the same way everywhere: the
    concept is made, listed and removed under its stripped text."""
    handler = handled(model)
    for text in ("\u200b\u200b", "\x00", "\ufeff", "cup\x00", "red\tcup", "red\u200bcup", "\ud800cup", " \x07 "):
        reply = ask(handler, "add_concept", text=text)
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", (text, reply)
        message = reply["error"]["message"]
        assert message.startswith("invalid add_concept args: text:") and "control or format" in message, message
    reply = ask(handler, "add_concept", text=" \t red cup\n ")
    assert reply["ok"] and reply["result"]["concept"]["text"] == "red cup", reply
    assert [c.text for c in handler.streams["s"].concepts.infos()] == ["red cup"]
    assert ask(handler, "add_concept", text="red cup ")["ok"]  # the same concept: new settings, not a second one
    assert [c["text"] for c in ask(handler, "list_concepts")["result"]["concepts"]] == ["red cup"]
    assert ask(handler, "remove_concept", text="\tred cup")["result"] == {"concepts": []}
    assert ConceptSpec("  cup\n").text == "cup"
    with pytest.raises(ConceptError, match="^text: .*U\\+200B"):
        ConceptSpec("\u200b")


def test_an_object_far_behind_the_newest_frame_is_tracked_from_the_next_frame(model, monkeypatch):
    monkeypatch.setattr(concepting, "RETRACK_MAX_LAG", 1)  # the answer's frame is 2 behind: no re-tracking
    t = stepped(model)
    BoxMasks(t)
    c = StreamConcepts("s", t, "omdet-turbo")
    c.add(ConceptSpec("cup", stream="s"))
    retracked, frame = t.retracked_frames, t.window[1]
    (found,) = apply(c, done(frame, (40, 10, 80, 40)))
    assert t.retracked_frames == retracked  # the tracking thread spent one prompt on it, no step per frame
    assert found in t.result(frame).objects and found not in t.result().objects
    t.step(np.zeros((H, W, 3), np.uint8))
    assert found in t.result().objects
