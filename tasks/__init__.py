"""Celery app and thin task wrappers around adaptive services."""

from tasks.celery import app as celery_app

__all__ = ["celery_app"]
