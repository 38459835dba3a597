"""Scheduled jobs: when things run. Services say what."""
