"""Replies: the responder's rules and decisions, and sending what it decided."""
