"""Brains: pure decisions. One frozen input in, one frozen decision out; no I/O, no clock."""
