"""The JSON API under /api/v1: the doctor's inbox and settings, connections, operator tools."""
