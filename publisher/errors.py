"""The exceptions publisher raises; each renders as one line a user can act on."""


class PublisherError(Exception):
    """Base of every error publisher raises on purpose.

    `where` names the file, URL or setting at fault; `hint` says what to do next.
    """

    def __init__(self, message: str, *, where: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        line = f"{self.where}: {self.message}" if self.where else self.message
        return f"{line}; {self.hint}" if self.hint else line


class ConfigError(PublisherError):
    """The settings file or an environment override is wrong."""

    def __init__(self, problems: list[str], *, where: str = "") -> None:
        self.problems = problems
        super().__init__("; ".join(problems), where=where)

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        if len(self.problems) == 1:
            return head + self.problems[0]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{head}{len(self.problems)} problems in the settings:\n{lines}"


class SourceError(PublisherError):
    """An article file or an upstream feed could not be read."""


class StoreError(PublisherError):
    """The database could not be read or written."""


class RenderError(PublisherError):
    """A template or feed could not be rendered."""


class WriteError(PublisherError):
    """Output could not be written; what was there before is untouched."""


class DeliveryError(PublisherError):
    """A message could not be built or handed to the SMTP server."""


class LockedError(PublisherError):
    """Another process holds the lock this work needs (issue 6)."""
