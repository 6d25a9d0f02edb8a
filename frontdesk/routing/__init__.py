"""Routing: which doctor owns the Instagram account an event was sent to."""
