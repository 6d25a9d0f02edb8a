"""The durable queue (the inbox table is the queue) and the worker that drains it."""
