"""Realistic signed deliveries, written to pool files the load generators replay.

A pool file holds one request per line: `key<TAB>signature<TAB>body`. The key names the
request (the patient id of a single message, so that end-to-end timing can find its reply);
the signature is Meta's `X-Hub-Signature-256` over the exact body. Every body is unique: each
message has a fresh mid and, unless asked otherwise, a fresh patient.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from frontdesk.testing.payloads import delivery, encode, entry, message_item
from frontdesk.testing.signing import signature_for

PAGE_ID_BASE = 17_841_400_000_000_000
PATIENT_ID_BASE = 7_000_000_000_000_000
BATCH_EVENTS = 50
BATCH_DOCTORS = 5
SPREAD = 7919

TEXTS = (
    "Hello, I would like to book an appointment for next week. Is Tuesday morning possible?",
    "Hi! Do you accept new patients? I have had a sore throat for three days.",
    "Good evening, can I move my appointment on Friday to the afternoon? Thank you",
    "How much does a first consultation cost, and do I need a referral?",
    "Thanks for the quick answer, see you on Monday at 10.",
    "Is the clinic open on Saturdays? Where can I park?",
)


def page_id(doctor_index: int) -> str:
    """The Instagram professional account id of the benchmark's doctor number `doctor_index`."""
    return str(PAGE_ID_BASE + doctor_index)


@dataclass(frozen=True)
class Request:
    key: str
    body: bytes
    events: int


class PatientIds:
    """Fresh patient ids: one allocator per benchmark run, so no two messages share a patient."""

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def take(self) -> str:
        self._next += 1
        return str(PATIENT_ID_BASE + self._next)


def _mid(tag: str) -> str:
    return f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj{tag}{uuid.uuid4().hex}"


def single_messages(
    count: int, *, doctors: int, patients: PatientIds, now_ms: int | None = None
) -> Iterator[Request]:
    """Deliveries of one inbound DM each, round-robin over `doctors`, each from a new patient."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    for index in range(count):
        sender = patients.take()
        page = page_id(index % doctors)
        item = message_item(
            sender=sender,
            recipient=page,
            mid=_mid("s"),
            text=TEXTS[index % len(TEXTS)],
            timestamp=stamp + index,
        )
        body = encode(delivery(entry(page, messaging=[item], time=stamp + index)))
        yield Request(key=sender, body=body, events=1)


def batches(
    count: int,
    *,
    doctors: int,
    patients: PatientIds,
    events: int = BATCH_EVENTS,
    doctors_per_batch: int = BATCH_DOCTORS,
    now_ms: int | None = None,
) -> Iterator[Request]:
    """Deliveries of `events` DMs for `doctors_per_batch` doctors (one entry each), as Meta
    batches them under load; each message from a new patient."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    per_doctor = events // doctors_per_batch
    for index in range(count):
        entries = []
        for slot in range(doctors_per_batch):
            # A prime stride spreads the batches over all connected doctors.
            page = page_id((index * doctors_per_batch + slot) * SPREAD % doctors)
            items = [
                message_item(
                    sender=patients.take(),
                    recipient=page,
                    mid=_mid("b"),
                    text=TEXTS[(index + number) % len(TEXTS)],
                    timestamp=stamp + index * events + slot * per_doctor + number,
                )
                for number in range(per_doctor)
            ]
            entries.append(entry(page, messaging=items, time=stamp + index))
        body = encode(delivery(*entries))
        yield Request(key=f"batch-{index}", body=body, events=per_doctor * doctors_per_batch)


@dataclass(frozen=True)
class Pool:
    path: Path
    requests: int
    events_per_request: int
    body_bytes: int


def write_pool(path: Path, requests: Sequence[Request] | Iterator[Request], secret: str) -> Pool:
    """Sign every request with `secret` and write the pool file."""
    count = 0
    events = 0
    size = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for request in requests:
            signature = signature_for(request.body, secret)
            handle.write(f"{request.key}\t{signature}\t".encode() + request.body + b"\n")
            count += 1
            events = request.events
            size = len(request.body)
    if count == 0:
        raise ValueError("a pool needs at least one request")
    return Pool(path=path, requests=count, events_per_request=events, body_bytes=size)


def read_pool(path: Path) -> list[tuple[str, str, bytes]]:
    """(key, signature, body) of every line of a pool file."""
    entries = []
    with path.open("rb") as handle:
        for line in handle:
            key, signature, body = line.rstrip(b"\n").split(b"\t", 2)
            entries.append((key.decode(), signature.decode(), body))
    return entries
