"""Send API client: the doctor's token in the Authorization header, never in a URL or a log."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx2

from frontdesk.graph.errors import GraphTransientError, classify_error, parse_retry_after

INSTAGRAM_LOGIN = "instagram"
FACEBOOK_LOGIN = "facebook"


@dataclass(frozen=True)
class SendTarget:
    """Where a reply goes: which login the connection used and the account id to send as."""

    login_kind: str
    account_id: str


class GraphClient:
    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        instagram_base_url: str,
        facebook_base_url: str,
        version: str,
        total_timeout: float = 15.0,
    ) -> None:
        """`total_timeout` bounds a whole send, whatever the phases' own timeouts allow."""
        self._http = http
        self._total_timeout = total_timeout
        self._base_urls = {
            INSTAGRAM_LOGIN: instagram_base_url.rstrip("/"),
            FACEBOOK_LOGIN: facebook_base_url.rstrip("/"),
        }
        self._version = version

    async def send_text(
        self, target: SendTarget, *, recipient_id: str, text: str, access_token: str
    ) -> str:
        """Send one text message; returns Meta's message id."""
        url = f"{self._base_urls[target.login_kind]}/{self._version}/{target.account_id}/messages"
        body = {"recipient": {"id": recipient_id}, "message": {"text": text}}
        try:
            async with asyncio.timeout(self._total_timeout):
                response = await self._http.post(
                    url, json=body, headers={"Authorization": f"Bearer {access_token}"}
                )
        except (TimeoutError, httpx2.TimeoutException) as exc:
            raise GraphTransientError("graph_timeout") from exc
        except httpx2.TransportError as exc:
            raise GraphTransientError("graph_unreachable") from exc
        payload = _json_or_none(response)
        if response.is_success and isinstance(payload, dict) and "message_id" in payload:
            return str(payload["message_id"])
        if response.is_success:
            raise GraphTransientError("graph_malformed_response")
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise classify_error(response.status_code, payload, retry_after)


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
