"""Real-time intake: webhooks and queue messages recorded in Redis, coalesced into bulk work.

Nothing here transforms or pushes: an event is verified, parsed, recorded durably and
acknowledged; a flush (a Celery task in `tasks.intake`) later hands coalesced asset ids to
`connector.pipeline.sync_assets_by_id`. No celery imports in this package.
"""
