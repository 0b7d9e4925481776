"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class NewstagError(Exception):
    """A problem the user can fix: the message names the file, row or field and what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so both stop the same clean way."""
