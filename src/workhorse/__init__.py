"""workhorse: background jobs for Python."""

from typing import TYPE_CHECKING

from workhorse import lazy
from workhorse.app import Workhorse
from workhorse.backends import Backend, Capabilities, backend_from_url
from workhorse.backoff import Backoff, Custom, Exponential, Fixed
from workhorse.context import JobContext
from workhorse.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    DuplicateJob,
    JobCancelled,
    JobError,
    JobFailed,
    LeaseLost,
    PayloadError,
    RunTimeout,
    UnknownTaskError,
    WorkhorseError,
)
from workhorse.job import Event, Job, JobKey, JobState, WorkerInfo
from workhorse.settings import Settings
from workhorse.task import BoundTask, JobHandle, Task
from workhorse.worker import Worker

if TYPE_CHECKING:
    from workhorse.flows import FlowFailed, RunHandle, RunInfo
    from workhorse.hooks import Hook, JobEvent

__version__ = "0.1.0"

# Flows and hooks load on first use (about 1.2 MB of modules an app without them skips).
_LAZY = {
    **dict.fromkeys(("FlowFailed", "RunHandle", "RunInfo"), "workhorse.flows"),
    **dict.fromkeys(("Hook", "JobEvent"), "workhorse.hooks"),
}

__getattr__ = lazy.names(__name__, _LAZY)


__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Backoff",
    "BoundTask",
    "Capabilities",
    "ConfigError",
    "Custom",
    "DuplicateJob",
    "Event",
    "Exponential",
    "Fixed",
    "FlowFailed",
    "Hook",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobKey",
    "JobState",
    "LeaseLost",
    "PayloadError",
    "RunHandle",
    "RunInfo",
    "RunTimeout",
    "Settings",
    "Task",
    "UnknownTaskError",
    "Worker",
    "WorkerInfo",
    "Workhorse",
    "WorkhorseError",
    "__version__",
    "backend_from_url",
]
