"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class SwelegoError(Exception):
    """Base class: the message alone tells the user what went wrong and what to do."""


class SourceError(SwelegoError):
    """A repository source could not be parsed or fetched."""


class DockerUnavailableError(SwelegoError):
    """No Docker engine answers."""


class ImageBuildError(SwelegoError):
    """An image build failed; ``log_tail`` holds the last lines of the build log."""

    def __init__(self, message: str, log_tail: str = ""):
        self.log_tail = log_tail
        super().__init__(message if not log_tail else f"{message}\n--- build log (tail) ---\n{log_tail}")

    @property
    def headline(self) -> str:
        return str(self).splitlines()[0]
