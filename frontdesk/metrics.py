"""Prometheus metrics: counters kept in process, queue gauges read from the database at scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """One registry per running instance, so that instances in one process never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "frontdesk_webhook_deliveries",
            "Webhook deliveries by intake result.",
            ["result"],
            registry=self.registry,
        )
        self.events_received = Counter(
            "frontdesk_webhook_events_received",
            "Events stored by intake, duplicates excluded.",
            registry=self.registry,
        )
        self.duplicate_events = Counter(
            "frontdesk_webhook_duplicate_events",
            "Events intake skipped because they were already stored.",
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "frontdesk_webhook_signature_failures",
            "Deliveries refused for a missing or wrong signature.",
            registry=self.registry,
        )
        self.events_finished = Counter(
            "frontdesk_events_finished",
            "Events the worker finished, by final status.",
            ["status"],
            registry=self.registry,
        )
        self.sends = Counter(
            "frontdesk_graph_sends",
            "Graph API sends by result.",
            ["result"],
            registry=self.registry,
        )
        self.accepted_unrecorded = Gauge(
            "frontdesk_graph_sends_accepted_unrecorded",
            "Replies Meta accepted whose send is not yet committed (this process remembers them).",
            registry=self.registry,
        )
        self.events_by_status = Gauge(
            "frontdesk_events_by_status",
            "Stored events by status, read at scrape time.",
            ["status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "frontdesk_queue_depth",
            "Events queued or processing.",
            registry=self.registry,
        )
        self.oldest_queued_age = Gauge(
            "frontdesk_oldest_queued_age_seconds",
            "Age of the oldest queued event.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
