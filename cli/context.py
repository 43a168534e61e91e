"""What every command gets: its arguments, the environment, the output streams, and a client."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from cli.progress import Progress

if TYPE_CHECKING:  # only for annotations: client commands must not import the service's code
    from client import Client
    from shared.settings import Settings

DEFAULT_API_URL = "http://127.0.0.1:8000"
API_URL_VARIABLE = "COLORIZE_API_URL"
API_KEY_VARIABLE = "COLORIZE_API_KEY"


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit status 2)."""


@dataclass
class Context:
    args: argparse.Namespace
    extra: list[str]  # arguments passed through to a delegated command
    env: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO
    _client: Client | None = field(default=None, init=False)

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    @property
    def progress(self) -> Progress:
        return Progress(self.stderr)

    def client(self) -> Client:
        if self._client is None:
            from client import Client

            try:
                self._client = Client(self.args.api, api_key=self.args.api_key or None)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return self._client

    def settings(self) -> Settings:
        """The service's settings, for the commands that run parts of it on this machine."""
        from shared.settings import Settings, SettingsError

        try:
            return Settings.from_env(self.env)
        except SettingsError as exc:
            raise UsageError(str(exc)) from None

    def note(self, message: str) -> None:
        """A line for the person at the terminal (stderr, so stdout stays parseable)."""
        print(message, file=self.stderr, flush=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
