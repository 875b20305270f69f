"""Pipeline metrics: counters every process adds to one Redis hash, read by one collector.

`add` / `flush` (from `recorder`) are the write side: in-process deltas, flushed in one
pipeline per task or request. `connector.metrics.collector` is the read side (a
prometheus_client collector on the `web` process and `connector metrics`). Why Redis and
not prometheus multiprocess mode: docs/operations.md ("Metrics").
"""

from connector.metrics.recorder import add, bind, endpoint_template, flush

__all__ = ["add", "bind", "endpoint_template", "flush"]
