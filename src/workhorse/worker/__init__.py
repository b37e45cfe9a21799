from workhorse.worker.worker import Worker

__all__ = ["Worker"]
