"""The worker: claims jobs, runs their attempts, renews leases and writes outcomes."""

from workhorse.worker.worker import Worker

__all__ = ["Worker"]
