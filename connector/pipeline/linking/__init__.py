"""Direct product linking (`product_link.mode: direct`): the connector writes each pushed
asset's code into its products' asset-collection attribute.

Why it is more than a PATCH: Akeneo's product PATCH replaces the whole collection array,
so a link is a read-merge-write of the product. Three things make that safe:

- Serialised per product, fleet-wide: the read-merge-write of a product happens under a
  short Redis lock on its identifier (random token, TTL, renewed just before the write,
  released only by its holder), so concurrent push processes never overwrite each
  other's codes. Still one product read per ≤100 products and one NDJSON PATCH per ≤100
  lines.
- Remembered: the identifiers each asset was linked to are kept per source
  (`links:linked:<source>`), so when an asset's product reference changes the previous
  product is unlinked (`product_link.unlink_previous`, on by default).
- Never dropped: a link (or unlink) that could not be made — product not found yet, a
  PATCH line refused, the PIM unreachable, the lock busy — waits in
  `links:pending:<source>` and is retried at the end of every run of that source and by
  the reconcile, until it succeeds. `connector links pending` lists them.

Dry runs never come here.
"""

from connector.pipeline.linking.link import (
    LinkOwner,
    SourceOnly,
    link_assets,
    pending_links,
    retry_after_run,
    retry_pending,
)
from connector.pipeline.linking.state import LinkOp, LinkState, PendingLink

__all__ = [
    "LinkOp",
    "LinkOwner",
    "LinkState",
    "PendingLink",
    "SourceOnly",
    "link_assets",
    "pending_links",
    "retry_after_run",
    "retry_pending",
]
