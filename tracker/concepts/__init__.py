"""Concept prompts' association and lifecycles: a detector's detections of a concept (with their SAM masks) matched
one to one with the tracked objects, new objects only over untracked area, each tentative until confirmed, then
lost, refound or removed (numpy and scipy only: no model, no transport)."""
