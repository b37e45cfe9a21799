"""Delayed jobs are due times in the store; this package fires cron schedules."""
