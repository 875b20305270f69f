"""The steps of a run, one module each: start, fetch, transform, push.

Each step function is the whole body of one Celery task (tasks/pipeline.py) and is safe
to run twice: see `connector.pipeline.runs` for the duplicate-safe bookkeeping, and
`connector.pipeline.completion` for how every task ends. The public step functions are
re-exported by `connector.pipeline`; this package re-exports nothing, so that its
modules can import each other without a cycle through it.
"""
