"""The whole suite's canary check: values no log line and no audit row may ever hold.

Every test logs through the product's own pipeline (`configure_logging`, JSON) into one file for
the session. What the tests hand the product that is patient data or a secret is collected as it
goes by: the texts and Instagram-scoped ids of every webhook posted with `post_delivery`, and
every token, code, recipient and text the fake Graph API saw. Audit rows are checked at the end of
each test that used the `runtime` fixture; the log file once, when the session ends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from frontdesk.testing.fake_graph import FakeGraphApi

# Shorter values ("hi", "ok") occur in ordinary words; a canary must be unmistakable.
MIN_LENGTH = 8
PARTIES = ("sender", "recipient", "from")


@dataclass
class Canaries:
    """Collected values by the first MIN_LENGTH characters, so that a long log is scanned in
    one pass of fixed windows instead of once per value."""

    kinds: dict[str, str] = field(default_factory=dict)
    _by_prefix: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, value: object, kind: str) -> None:
        if not isinstance(value, str) or len(value.strip()) < MIN_LENGTH:
            return
        self.kinds.setdefault(value, kind)
        self._by_prefix[value[:MIN_LENGTH]].add(value)

    def add_payload(self, payload: object) -> None:
        """Message texts and the ids of who wrote to whom, anywhere in a webhook payload."""
        if isinstance(payload, dict):
            for key, value in payload.items():
                if key == "text":
                    self.add(value, "message text")
                elif key in PARTIES and isinstance(value, dict):
                    self.add(value.get("id"), "instagram-scoped id")
                self.add_payload(value)
        elif isinstance(payload, list):
            for item in payload:
                self.add_payload(item)

    def add_fake_graph(self, fake: FakeGraphApi) -> None:
        for token in fake.issued_secrets():
            self.add(token, "token or code")
        for send in fake.sends:
            self.add(send.access_token, "access token")
            self.add(send.recipient_id, "instagram-scoped id")
            self.add(send.text, "message text")

    def found_in(self, text: str) -> set[str]:
        """The kinds of every collected value that occurs in `text`."""
        found: set[str] = set()
        for start in range(len(text) - MIN_LENGTH + 1):
            for value in self._by_prefix.get(text[start : start + MIN_LENGTH], ()):
                if text.startswith(value, start):
                    found.add(self.kinds[value])
        return found

    def lines_holding_any(self, lines: Iterable[str]) -> list[tuple[int, set[str]]]:
        return [
            (number, kinds)
            for number, line in enumerate(lines, 1)
            if (kinds := self.found_in(line))
        ]


SUITE = Canaries()
