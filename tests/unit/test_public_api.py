"""The flat public API is a promise: adding a name is a decision, removing one breaks users."""

import workhorse

EXPECTED = {
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
}


def test_public_names_are_pinned() -> None:
    assert set(workhorse.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(workhorse, name), name


def test_every_error_is_a_workhorse_error() -> None:
    for name in workhorse.__all__:
        obj = getattr(workhorse, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, workhorse.WorkhorseError), name
