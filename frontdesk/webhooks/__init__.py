"""Webhook intake: signature check, Meta payload → events, and the HTTP endpoint."""
