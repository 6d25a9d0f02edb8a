"""Test kit: fake Graph API, payload builders and a webhook signer (tests, demo, benchmarks)."""
