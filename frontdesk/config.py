"""Settings read from the environment (prefix FRONTDESK_), with embedded-use defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_VAR_DIR = Path("var")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything Frontdesk can be configured with; see the README for each setting."""

    model_config = SettingsConfigDict(env_prefix="FRONTDESK_", extra="ignore")

    var_dir: Path = DEFAULT_VAR_DIR
    database_url: str = ""
    database_role: str = "frontdesk_app"
    app_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    verify_token: str = ""
    encryption_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    public_url: str = "http://127.0.0.1:8000"

    instagram_app_id: str = ""
    instagram_app_secret: str = ""
    facebook_app_id: str = ""
    facebook_app_secret: str = ""
    instagram_authorize_url: str = "https://www.instagram.com/oauth/authorize"
    instagram_oauth_url: str = "https://api.instagram.com"
    facebook_authorize_url: str = "https://www.facebook.com"
    graph_api_url: str = "https://graph.instagram.com"
    facebook_graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v23.0"
    graph_timeout_seconds: PositiveFloat = 10.0

    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    body_timeout_seconds: PositiveFloat = 10.0
    intake_db_timeout_seconds: PositiveFloat = 2.0

    retry_delays: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [60, 300, 900])
    lease_seconds: PositiveInt = 60
    worker_concurrency: PositiveInt = 4
    worker_poll_seconds: PositiveFloat = 0.2
    retention_days: PositiveInt = 30

    fallback_reply_text: str = ""
    fallback_access_token: str = ""

    log_level: str = "INFO"

    @field_validator("app_secrets", "encryption_keys", mode="before")
    @classmethod
    def _split_string_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_int_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("retry_delays")
    @classmethod
    def _delays_are_non_negative(cls, value: list[int]) -> list[int]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must be zero or more seconds")
        return value

    def resolved_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file under the var directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'frontdesk.db'}"

    @property
    def fallback_reply_enabled(self) -> bool:
        return bool(self.fallback_reply_text and self.fallback_access_token)


def describe_invalid_settings(error: ValidationError) -> str:
    """Which settings are wrong and why, without the values: a misplaced secret stays unprinted."""
    problems = [
        f"FRONTDESK_{str(problem['loc'][0]).upper()}{_item(problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)
    ]
    return "invalid settings: " + "; ".join(problems)


def _item(location: tuple[int | str, ...]) -> str:
    """` (item 2)` for the second value of a comma-separated setting."""
    return (
        f" (item {location[1] + 1})" if len(location) > 1 and isinstance(location[1], int) else ""
    )
