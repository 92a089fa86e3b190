"""Concept prompts: objects found by an open-vocabulary detector join the stream (types.py: what a detector finds)."""
