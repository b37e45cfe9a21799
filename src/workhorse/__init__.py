"""workhorse: background jobs for Python."""

from workhorse.app import Workhorse
from workhorse.backends import Backend, Capabilities, backend_from_url
from workhorse.backoff import Backoff, Custom, Exponential, Fixed
from workhorse.context import JobContext
from workhorse.errors import (
    BackendError,
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
from workhorse.flows import FlowFailed, RunHandle, RunInfo
from workhorse.hooks import Hook, JobEvent
from workhorse.job import Event, Job, JobKey, JobState, WorkerInfo
from workhorse.settings import Settings
from workhorse.task import BoundTask, JobHandle, Task
from workhorse.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
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
