"""Composition root: wires the stages together."""
