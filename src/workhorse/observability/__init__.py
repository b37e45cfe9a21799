"""What an operator watches: job counters kept in the store, Prometheus figures of a
worker process and of the whole store, and health checks. Features here use the public
client and the in-process event bus only."""
