"""Offline runs: a source (a file, or any source string), the tracker, output files, and prompts on given
frames (`samtrack track`); one image through Meta's image predictor (`samtrack segment`)."""
