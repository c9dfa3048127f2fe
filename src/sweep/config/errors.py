"""Configuration errors: every problem names its key and the fix, one line each."""

from __future__ import annotations


class ConfigError(ValueError):
    """One or more configuration problems, each on its own line as `key: problem (fix)`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects problems so that all errors of one config are reported together."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def extend(self, items: list[str]) -> None:
        self.items.extend(items)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)
