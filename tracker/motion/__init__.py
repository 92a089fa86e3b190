"""Masks carried by motion between key frames: the newest model masks moved to each later frame by every
object's own motion, measured with sparse point tracks (numpy and OpenCV only, no model)."""
