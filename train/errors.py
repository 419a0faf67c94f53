"""The one error type the command line turns into a one-line message."""


class TrainError(Exception):
    """A bad option, path or checkpoint; the message is one line naming the culprit."""
