"""The outer ring: CLI, composition root, front ends."""
