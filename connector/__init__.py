"""DAM → Akeneo PIM asset connector.

`connector` is plain Python: it knows nothing of Celery. The Celery app and the thin task
wrappers live in the top-level `tasks` package.
"""

__version__ = "0.1.0"
