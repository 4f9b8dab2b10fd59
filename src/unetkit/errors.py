"""unetkit's own error types: every failure a user can cause ends in one of these, with a message
that names the file and the fix. The CLI prints the message on one line and exits with code 2."""


class UnetkitError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in unetkit."""


class ConfigError(UnetkitError):
    """A configuration value or command-line option that cannot be used."""


class DataError(UnetkitError):
    """A dataset, image or mask that cannot be read or does not fit."""


class CheckpointError(UnetkitError):
    """A file that is not a usable unetkit checkpoint."""


class TrainingError(UnetkitError):
    """Training cannot go on (e.g. repeated non-finite losses)."""


def naming(path: object, error: UnetkitError) -> str:
    """The error's message led by ``path`` unless it names it already: one image among many."""
    message = str(error)
    return message if str(path) in message else f"{path}: {message}"


class Terminated(KeyboardInterrupt):
    """SIGTERM during training (a cluster's pre-emption, ``kill``, torchrun stopping its workers):
    handled as Ctrl-C is, so last.pt is saved before the process ends."""
