"""Errors a user can act on. Each carries a one-line message the CLI prints as is."""


class WatcherError(Exception):
    """Base for failures reported to the user with a non-zero exit."""

    exit_code = 1


class ConfigError(WatcherError):
    """The configuration file or environment is wrong; names file, key and problem."""

    exit_code = 2


class UsageError(WatcherError):
    """Bad input on the command line (a malformed tag, an unknown colour)."""

    exit_code = 2


class DockerUnavailable(WatcherError):
    """The Docker engine cannot be reached; nothing was changed."""


class LockBusy(WatcherError):
    """Another deploy, rollback, cleanup or reset holds the lock."""

    exit_code = 3


class RedisUnavailable(WatcherError):
    """Redis (queue, lock, pause) cannot be reached; says where and why, never the password."""


class StateUnwritable(WatcherError):
    """The state directory refused a write (a full disk, a read-only file system): that write
    did not land; what was there before is intact (every write is atomic)."""


def unwritable(directory: object, what: str, exc: OSError) -> StateUnwritable:
    """A directory watcher must write refused it: which one, why, and the way out."""
    reason = exc.strerror or str(exc)
    return StateUnwritable(
        f"cannot write {what} {directory} ({reason}): make it writable by the user running watcher "
        "(or run watcher as its owner); nothing was started or switched"
    )


class DeployFailed(WatcherError):
    """The deploy did not go live; the previous colour still serves."""


class GuardLost(WatcherError):
    """The right to switch traffic was lost (lock gone); nothing was switched."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised from the signal handler so every phase unwinds.

    A BaseException, like KeyboardInterrupt, so `except Exception` never swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class PullFailed(WatcherError):
    """The engine refused or failed a pull (the registry's answer, not Docker's absence)."""
