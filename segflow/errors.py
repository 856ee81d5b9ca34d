"""The failures a run can end in, each with the exit code the CLI returns for it."""

from __future__ import annotations


class SegflowError(Exception):
    """Base of segflow's own failures; the message is meant for a data engineer. A transient one
    (a server restarting, a connection dropped) is retried by the I/O tasks."""

    exit_code = 1

    def __init__(self, message: str, transient: bool = False):
        self.transient = transient
        super().__init__(message)


class ConfigError(SegflowError):
    """A config file, key or value that cannot be used; nothing was read."""

    exit_code = 2


class SourceError(SegflowError):
    """A source that cannot be read: missing, corrupt, empty, unknown, or (transient) unreachable."""

    exit_code = 1


class ContractViolation(SegflowError):
    """A critical data-contract rule failed; nothing new is published."""

    exit_code = 3


class GateRejected(SegflowError):
    """The validation gate rejected the segmentation; the last good publication stays current."""

    exit_code = 4

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("validation gate rejected the segmentation: " + "; ".join(reasons))


class PublishError(SegflowError):
    """A publication could not be completed; the previous one is still the current one."""

    exit_code = 1


def failure_status(error: BaseException) -> str:
    """The segmentation_runs status of a run that ended with `error`."""
    if isinstance(error, GateRejected):
        return "rejected"
    if isinstance(error, ContractViolation):
        return "failed_contract"
    return "failed"
