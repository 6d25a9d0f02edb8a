"""What the worker does with each kind of event."""
