"""marshmallow schemas, one module per section of the config file; `ConfigSchema` is the root.

Raw config tree (after `${VAR}` interpolation, connector/config/interpolate.py) → model
dataclasses (connector/config/model.py). Every schema is named here so that tests can walk
them all (each key documented in docs/configuration.md, each model field reachable).
"""

from connector.config.schemas.alerts import AlertsSchema
from connector.config.schemas.base import StrictSchema
from connector.config.schemas.dam import (
    AuthSchema,
    FolderSourceSchema,
    GraphQLSchema,
    ListEndpointSchema,
    MediaSchema,
    PaginationSchema,
    RestSourceSchema,
)
from connector.config.schemas.deletion import DeletionPolicySchema, MaxDeletionsSchema
from connector.config.schemas.families import (
    FamilySchema,
    LocaleRuleSchema,
    MappingEntrySchema,
    ProductLinkSchema,
    SelectorSchema,
)
from connector.config.schemas.intake import (
    EventFieldsSchema,
    QueueSchema,
    RealtimeSchema,
    WebhookSchema,
)
from connector.config.schemas.pim import PimSchema
from connector.config.schemas.root import ConfigSchema
from connector.config.schemas.s3 import S3SourceSchema
from connector.config.schemas.sources import SourceSchema
from connector.config.schemas.sync import ScheduleSchema, SyncSchema

__all__ = [
    "AlertsSchema",
    "AuthSchema",
    "ConfigSchema",
    "DeletionPolicySchema",
    "EventFieldsSchema",
    "FamilySchema",
    "FolderSourceSchema",
    "GraphQLSchema",
    "ListEndpointSchema",
    "LocaleRuleSchema",
    "MappingEntrySchema",
    "MaxDeletionsSchema",
    "MediaSchema",
    "PaginationSchema",
    "PimSchema",
    "ProductLinkSchema",
    "QueueSchema",
    "RealtimeSchema",
    "RestSourceSchema",
    "S3SourceSchema",
    "ScheduleSchema",
    "SelectorSchema",
    "SourceSchema",
    "StrictSchema",
    "SyncSchema",
    "WebhookSchema",
]
