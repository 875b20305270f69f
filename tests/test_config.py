"""User configuration: examples load, every error is reported with its path, secrets stay
secret, `${VAR}` interpolation, and the selector expression language."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.config import (
    ConfigError,
    ExpressionError,
    compile_expression,
    load_config,
    parse_config,
)
from connector.config.model import Config
from connector.settings import Secret

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXAMPLE_ENV = {
    "DAM_TOKEN": "demo-token-123",
    "BYNDER_DOMAIN": "acme.bynder.com",
    "BYNDER_TOKEN": "bynder-token-456",
    "CLOUDINARY_CLOUD_NAME": "acme",
    "CLOUDINARY_API_KEY": "1234567890",
    "CLOUDINARY_API_SECRET": "cloudinary-secret-789",
    "DAM_WEBHOOK_SECRET": "hook-secret",
    "DAM_QUEUE_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "S3_BUCKET": "dam-assets",
    "GRAPHQL_DAM_URL": "https://dam.example.com",
    "GRAPHQL_DAM_TOKEN": "graphql-token-321",
}

SECRET_VALUE = "s3cr3t-Value-never-printed"


def base() -> dict[str, Any]:
    """A small valid config; tests break one thing at a time."""
    return {
        "families": {
            "packshots": {
                "match": {"folder": "products/packshots"},
                "mapping": {
                    "image_url": {"property": "original", "type": "media_link"},
                    "product_ref": "property_sku",
                },
            }
        },
        "sources": {
            "bynder": {
                "type": "rest",
                "rest": {
                    "base_url": "http://127.0.0.1:8081",
                    "auth": {"type": "bearer", "token": "${DAM_TOKEN}"},
                    "list": {"path": "/api/v4/media/"},
                    "pagination": {"type": "page_number"},
                },
            }
        },
    }


ENV = {"DAM_TOKEN": SECRET_VALUE}


def errors_of(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, ENV if env is None else env)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def put(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with `value` at `dotted` (segments split on "/")."""
    data = copy.deepcopy(data)
    *parents, last = dotted.split("/")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()

# ---------------------------------------------------------------- examples


CONFIG_EXAMPLES = sorted(
    {"demo.yaml", "bynder.yaml", "cloudinary.yaml", "folder.yaml"}
    | {p.name for p in EXAMPLES.glob("*.yaml") if p.name != "structure.yaml"}
)


@pytest.mark.parametrize("name", CONFIG_EXAMPLES)
def test_every_example_loads(name: str) -> None:
    config = load_config(EXAMPLES / name, env=EXAMPLE_ENV)
    assert isinstance(config, Config)
    assert config.path == str((EXAMPLES / name).resolve())
    assert config.families and config.sources
    for source in config.sources:
        for family in config.families_of(source):
            assert family.mapping, family.name
        assert "s3cr3t" not in repr(source)


def test_demo_example_matches_the_sandbox_and_demo_structure() -> None:
    config = load_config(EXAMPLES / "demo.yaml", env=EXAMPLE_ENV)
    assert [f.name for f in config.families] == ["packshots", "user_guides", "videos"]
    sandbox = config.source("sandbox")
    assert sandbox.rest is not None
    assert sandbox.rest.base_url == "http://127.0.0.1:8081"
    assert sandbox.rest.auth.type == "bearer"
    assert sandbox.rest.auth.token == Secret("demo-token-123")
    assert "demo-token-123" not in repr(config)
    hot = config.source("hot_folder")
    assert hot.folder is not None
    assert hot.folder.path == str(EXAMPLES / "hotfolder")  # anchored at the file's folder
    assert config.families_of(hot) == (config.family("user_guides"),)
    packshots = config.family("packshots")
    codes = {m.attribute for m in packshots.mapping}
    assert codes == {
        "image_url", "label", "main_colors", "tags", "disclaimer", "product_ref", "width",
        "height",
    }
    colours = next(m for m in packshots.mapping if m.attribute == "main_colors")
    assert colours.expected_type == "multiple_options"
    assert colours.auto_create_options is False
    assert packshots.auto_create_options is True
    videos = config.family("videos")
    title = next(m for m in videos.mapping if m.attribute == "title")
    assert title.source.property == "name" and title.expected_type is None  # shorthand
    assert sandbox.schedule is not None and sandbox.schedule.every == 300.0
    assert sandbox.reconcile_schedule is not None
    assert sandbox.reconcile_schedule.crontab == "0 3 * * *"


def test_demo_product_asset_expression_selects_the_sandbox_records() -> None:
    config = load_config(EXAMPLES / "demo.yaml", env=EXAMPLE_ENV)
    assert config.product_asset.expression is not None
    is_product = compile_expression(config.product_asset.expression)
    record = {
        "id": "0A3C2A6E-4C32-4E1B-9F3E-5D2A1B3C4D5E",
        "folder": "products/packshots",
        "tags": ["product", "summer"],
        "property_product_asset": True,
    }
    assert is_product(record)
    assert not is_product({"folder": "marketing/banners", "tags": ["campaign"]})
    assert is_product({"folder": "products/user-guides", "tags": []})  # hot folder files


def test_demo_example_reads_the_sandbox_dam_into_the_right_families() -> None:
    """The demo source really talks to the sandbox DAM, and its selectors sort its records."""
    import collections
    import dataclasses

    from connector.dam.factory import build_source
    from connector.transform.selectors import asset_view, matches
    from sandbox.dam import DamSandbox

    server = DamSandbox(assets=60, shape="bynder", seed=3).serve()
    try:
        config = load_config(EXAMPLES / "demo.yaml", env={"DAM_TOKEN": "sandbox-dam-token"})
        source = config.source("sandbox")
        assert source.rest is not None
        source = dataclasses.replace(
            source, rest=dataclasses.replace(source.rest, base_url=server.url)
        )
        dam = build_source(source)
        sorted_into: collections.Counter[tuple[str | None, str | None]] = collections.Counter()
        for page in dam.changed_since(None):
            for asset in page.assets:
                view = asset_view(asset)
                family = None
                if matches(config.product_asset, view):
                    family = next(
                        (f.name for f in config.families_of(source) if matches(f.match, view)),
                        "(none)",
                    )
                sorted_into[family, (asset.folder or "").split("/")[0]] += 1
        dam.close()
    finally:
        server.stop()
    families = {family for family, _ in sorted_into}
    assert {"packshots", "user_guides", "videos"} <= families
    assert "(none)" not in families  # every product asset finds its family
    assert all(top == "products" for family, top in sorted_into if family is not None)
    assert all(family is None for family, top in sorted_into if top == "marketing")


def test_examples_pass_connector_check_against_the_demo_structure(namespace, redis_client) -> None:
    from connector.config.model import PimConfig
    from connector.pim.client import AkeneoClient
    from connector.redis_conn import Keys
    from connector.settings import PimCredentials
    from connector.structure import apply_structure, load_structure_file, run_check
    from sandbox.pim import PimSandbox, PimSandboxSettings

    server = PimSandbox(PimSandboxSettings(max_concurrency=0)).serve()
    try:
        credentials = PimCredentials(
            url=server.url, client_id="sandbox-client", client_secret=Secret("sandbox-secret"),
            username="sandbox", password=Secret("sandbox-password"),
        )
        limits = PimConfig(requests_per_second=10_000, option_writes_per_second=10_000)
        client = AkeneoClient(credentials, limits, redis_client, Keys(namespace))
        assert apply_structure(client, load_structure_file(EXAMPLES / "structure.yaml")).ok
        for name in ("demo.yaml", "bynder.yaml", "cloudinary.yaml", "folder.yaml"):
            report = run_check(load_config(EXAMPLES / name, env=EXAMPLE_ENV), client)
            assert report.findings == [], (name, report.findings)
            assert set(report.families.values()) == {"ok"}, name
        client.close()
    finally:
        server.stop()


def test_hot_folder_env_default_and_override(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "demo.yaml", env={**EXAMPLE_ENV, "HOT_FOLDER": str(tmp_path)})
    folder = config.source("hot_folder").folder
    assert folder is not None and folder.path == str(tmp_path)


def test_docs_complete_example_loads() -> None:
    from connector.config.loader import parse_yaml

    text = (EXAMPLES.parent / "docs" / "configuration.md").read_text()
    block = text.split("## Complete example", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    data, duplicates = parse_yaml(block)
    assert duplicates == []
    env = {"BYNDER_DOMAIN": "a.bynder.com", "BYNDER_TOKEN": "t", "BYNDER_WEBHOOK_SECRET": "w"}
    config = parse_config(data, env)
    assert {s.name for s in config.sources} == {"bynder", "dropbox"}


def test_docs_mention_every_key() -> None:
    from marshmallow import Schema

    from connector.config import schemas

    text = (EXAMPLES.parent / "docs" / "configuration.md").read_text()
    missing = []
    for value in vars(schemas).values():
        if isinstance(value, type) and issubclass(value, Schema) and value is not Schema:
            instance = value()
            for name, field in instance.load_fields.items():
                key = field.data_key or name
                if f"`{key}`" not in text:
                    missing.append(f"{value.__name__}.{key}")
    assert missing == []


def test_schemas_cover_every_model_field() -> None:
    """A field added to model.py without a schema key would be unreachable from the file."""
    import dataclasses

    from connector.config import model, schemas

    pairs: list[tuple[Any, Any, set[str]]] = [
        (schemas.ConfigSchema, model.Config, {"path"}),
        (schemas.PimSchema, model.PimConfig, set()),
        (schemas.SyncSchema, model.SyncConfig, set()),
        (schemas.AlertsSchema, model.AlertsConfig, set()),
        (schemas.SelectorSchema, model.Selector, set()),
        (schemas.FamilySchema, model.FamilyConfig, {"name"}),
        (schemas.LocaleRuleSchema, model.LocaleRule, set()),
        (schemas.ProductLinkSchema, model.ProductLinkConfig, set()),
        (schemas.SourceSchema, model.SourceConfig, {"name"}),
        (schemas.RestSourceSchema, model.RestSourceConfig, set()),
        (schemas.ListEndpointSchema, model.ListEndpointConfig, set()),
        (schemas.GraphQLSchema, model.GraphQLConfig, set()),
        (schemas.AuthSchema, model.AuthConfig, set()),
        (schemas.PaginationSchema, model.PaginationConfig, set()),
        (schemas.FolderSourceSchema, model.FolderSourceConfig, set()),
        (schemas.S3SourceSchema, model.S3SourceConfig, set()),
        (schemas.ScheduleSchema, model.ScheduleConfig, set()),
        (schemas.DeletionPolicySchema, model.DeletionPolicy, set()),
        (schemas.MediaSchema, model.MediaConfig, set()),
        (schemas.WebhookSchema, model.WebhookConfig, set()),
        (schemas.EventFieldsSchema, model.EventFieldsConfig, set()),
        (schemas.QueueSchema, model.QueueIntakeConfig, set()),
        (schemas.RealtimeSchema, model.RealtimeConfig, set()),
    ]
    for schema_class, dataclass, not_in_file in pairs:
        attrs = {name.rstrip("_") if name in ("include_", "exclude_") else name
                 for name in schema_class().load_fields}
        wanted = {f.name for f in dataclasses.fields(dataclass)} - not_in_file
        assert attrs == wanted, schema_class.__name__
    entry = set(schemas.MappingEntrySchema().load_fields)
    mapping_fields = {f.name for f in dataclasses.fields(model.AttributeMapping)}
    source_fields = {f.name for f in dataclasses.fields(model.ValueSource)}
    assert entry == (mapping_fields - {"attribute", "source"}) | source_fields


# ---------------------------------------------------------------- loading


def test_load_config_uses_connector_config(tmp_path: Path) -> None:
    file = tmp_path / "c.json"
    file.write_text(json.dumps(base()))  # JSON is YAML
    config = load_config(env={"CONNECTOR_CONFIG": str(file), **ENV})
    assert config.path == str(file.resolve())
    assert config.family("packshots").mapping[1].source.property == "property_sku"


def test_load_config_without_a_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert info.value.errors == [
        "no configuration file given: pass its path or set CONNECTOR_CONFIG"
    ]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", env={})
    assert info.value.errors == [f"{tmp_path / 'nope.yaml'}: no such file"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError) as info:
        load_config(empty, env={})
    assert info.value.errors == [f"{empty}: the file is empty"]


def test_yaml_syntax_error_has_line_and_column_but_no_snippet(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(f"sources:\n  x:\n    token: {SECRET_VALUE}\n   bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    (message,) = info.value.errors
    assert message.startswith(f"{file}: line 4, column 4: ")
    assert SECRET_VALUE not in message


def test_duplicate_keys_are_reported_with_other_errors(tmp_path: Path) -> None:
    file = tmp_path / "dup.yaml"
    file.write_text(
        "families:\n"
        "  videos: {match: {always: true}, mapping: {title: name}}\n"
        "  videos: {}\n"
        "sources:\n"
        "  dam: {type: folder, folder: {path: /srv/x}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(file, env=ENV)
    assert info.value.errors == [
        f'{file}: line 3, column 3: duplicate key "videos" (only one may be given)',
        "families.videos.mapping: required",
        "families.videos.match: required",
    ]


def test_yaml_yes_no_and_dates_stay_strings(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        """
families:
  packshots:
    match: {property: approved, equals: yes}
    locale: {map: {no: nb_NO, "on": en_US}}
    mapping:
      released: {constant: 2024-05-01}
sources:
  dam: {type: folder, folder: {path: /srv/x}}
"""
    )
    family = load_config(file, env={}).family("packshots")
    assert family.match.equals == "yes"
    assert family.locale.map == {"no": "nb_NO", "on": "en_US"}
    assert family.mapping[0].source.constant == "2024-05-01"


def test_self_referencing_yaml_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "loop.yaml"
    file.write_text("families: &a\n  x: *a\nsources: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert info.value.errors == ["(top level): the document refers to itself or is too deep"]


YAML_PIECES = st.sampled_from([
    "families:", "sources:", "  packshots:", "    match: {folder: a}", "    mapping: {a: b}",
    "  dam: {type: folder, folder: {path: /x}}", "pim: {locales: [en_US]}", "- a", "  - b",
    "x: &a [*a]", "{", "]", ": :", "'", "\t", "sync: {push_batch_size: 1000}", "!!python/none",
    "key: ${NOPE}", "token: ${DAM_TOKEN}", "    expression: 'a ==",
])


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(YAML_PIECES, max_size=10).map("\n".join)))
def test_random_files_only_ever_raise_config_error(tmp_path_factory: Any, text: str) -> None:
    file = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    file.write_text(text, encoding="utf-8")
    try:
        load_config(file, env=ENV)
    except ConfigError as exc:
        assert exc.errors
        assert SECRET_VALUE not in str(exc)


# ---------------------------------------------------------------- error table

ERROR_CASES: list[tuple[str, Any, str | None]] = [
    (
        "families/packshots/mapping/colors",
        {"property": "property_colors", "type": "colour"},
        'families.packshots.mapping.colors: unknown attribute type "colour" (known types: '
        "asset_collection, boolean, date, media_file, media_link, multiple_options, number, "
        "record, single_option, text)",
    ),
    (
        "sources/bynder/rest/pagination/type",
        "pages",
        "sources.bynder.rest.pagination.type: must be one of page_number, offset, cursor, "
        "header_cursor, link_header, none",
    ),
    (
        "sources/bynder/rest/pagination/cursor_path",
        "next",
        'sources.bynder.rest.pagination.cursor_path: not used by pagination type "page_number"',
    ),
    (
        "sources/bynder/rest/auth",
        {"type": "basic", "username": "me"},
        'sources.bynder.rest.auth.password: required for auth type "basic"',
    ),
    (
        "sources/bynder/rest/auth",
        {"type": "oauth2_client_credentials", "token_url": "/oauth/token", "client_id": "a",
         "client_secret": "${DAM_TOKEN}", "token": "${DAM_TOKEN}"},
        'sources.bynder.rest.auth.token: not used by auth type "oauth2_client_credentials"',
    ),
    (
        "sources/bynder/rest/auth/token",
        "abc-literal",
        "sources.bynder.rest.auth.token: must reference an environment variable, "
        "e.g. ${DAM_TOKEN}",
    ),
    (
        "sources/bynder/rest/auth/token",
        "Bearer ${DAM_TOKEN}",
        "sources.bynder.rest.auth.token: must reference an environment variable, "
        "e.g. ${DAM_TOKEN}",
    ),
    (
        "sources/bynder/rest/auth/token",
        "${DAM_TOKEN:-fallback}",
        "sources.bynder.rest.auth.token: a secret cannot have a default in the file; "
        "use ${DAM_TOKEN}",
    ),
    (
        "sources/bynder/rest/auth/token",
        "${NOT_SET_ANYWHERE}",
        "sources.bynder.rest.auth.token: environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        "sync/push_batch_size",
        101,
        "sync.push_batch_size: must be at most 100 (Akeneo accepts at most 100 assets per "
        "request)",
    ),
    ("sync/chunk_size", "ten", 'sync.chunk_size: must be an integer, got "ten"'),
    ("sync/backoff_max", 1, "sync.backoff_max: must be at least backoff_base (2)"),
    ("pim/max_in_flight", 0, "pim.max_in_flight: must be at least 1"),
    ("pim/requests_per_second", 0, "pim.requests_per_second: must be greater than 0"),
    ("pim/option_writes_per_second", -3, "pim.option_writes_per_second: must be greater than 0"),
    ("pim/timeout", True, "pim.timeout: must be a number of seconds or a duration such as 30s, "
     "5m, 1h, 1d, got true"),
    ("pim/locales", ["en_US", "French"], 'pim.locales[1]: must be a locale code such as "en_US"'),
    ("pim/password", "x", "pim.password: PIM credentials are not read from the file: set "
     "AKENEO_PASSWORD in the environment"),
    ("pim/media_password", "x", "pim.media_password: PIM credentials are not read from the "
     "file: set AKENEO_MEDIA_PASSWORD in the environment"),
    ("pim/rate", "x", "pim.rate: unknown key (allowed: channels, locales, max_in_flight, "
     "media_max_in_flight, option_writes_per_second, requests_per_second, "
     "structure_cache_ttl, timeout, token_refresh_margin)"),
    ("families/packshots/mappings", {}, 'families.packshots.mappings: unknown key; did you mean '
     '"mapping"?'),
    ("families/packshots/match", {}, "families.packshots.match: give exactly one of property, "
     "folder, tag, filename_regex, expression, always"),
    ("families/packshots/match", {"folder": "a", "tag": "b"}, "families.packshots.match: give "
     "exactly one of property, folder, tag, filename_regex, expression, always (got folder, "
     "tag)"),
    ("families/packshots/match", {"folder": "a", "equals": "b"}, "families.packshots.match."
     "equals: only used with property"),
    ("families/packshots/match", {"always": False}, "families.packshots.match.always: must be "
     "true (leave it out otherwise)"),
    ("families/packshots/match", {"filename_regex": "(abc"}, "families.packshots.match."
     "filename_regex: invalid regular expression: missing ), unterminated subpattern at "
     "position 0"),
    ("families/packshots/match", {"expression": 'tags contains "x" and and'},
     "families.packshots.match.expression: invalid expression, column 23: expected a property "
     'name or a value, got "and"'),
    ("families/packshots/match", {"expression": "folder = 'a'"},
     'families.packshots.match.expression: invalid expression, column 8: use "==" to compare'),
    ("families/packshots/locale", {"filename_regex": r"_[a-z]{2}_[A-Z]{2}\.pdf$"},
     'families.packshots.locale.filename_regex: needs a group named "locale" '
     "((?P<locale>...)) or at least one group"),
    ("families/packshots/locale", {"default": "en_US"}, None),
    ("families/packshots/product_link", {"mode": "direct", "product_attribute": "assets"},
     'families.packshots.product_link: mode "direct" needs identifier_property or '
     "identifier_regex"),
    ("families/packshots/product_link", {"mode": "direct", "identifier_property": "sku"},
     'families.packshots.product_link.product_attribute: required for product link mode '
     '"direct"'),
    ("families/packshots/product_link", {"mode": "rules", "product_attribute": "assets"},
     'families.packshots.product_link.product_attribute: not used by product link mode '
     '"rules"'),
    ("families/packshots/product_link", {"identifier_regex": "^(?P<id>x)"},
     'families.packshots.product_link.identifier_regex: not used by product link mode "none"'),
    ("families/packshots/mapping/sku", 123, "families.packshots.mapping.sku: must be a property "
     "path (string) or a mapping with property, constant or regex, got a number"),
    ("families/packshots/mapping/sku", "a..b", 'families.packshots.mapping.sku: must be a dotted '
     'property path such as "property_sku" or "context.custom.sku"'),
    ("families/packshots/mapping/sku", {"type": "text"}, "families.packshots.mapping.sku: give "
     "property, constant or regex (with property or on the filename)"),
    ("families/packshots/mapping/sku", {"regex": "^(.+)_", "group": "sku"},
     'families.packshots.mapping.sku.group: the regex has no group named "sku"'),
    ("families/packshots/mapping/sku", {"regex": "^(.+)_", "group": 2},
     "families.packshots.mapping.sku.group: the regex has no group 2 (it has 1)"),
    ("families/packshots/mapping/sku", {"property": "a", "group": 1},
     "families.packshots.mapping.sku.group: only used with regex"),
    ("families/packshots/mapping/sku", {"constant": None},
     "families.packshots.mapping.sku.constant: must have a value"),
    ("families/packshots/mapping/sku", {"property": "a", "option_map": {"Red": "dark red"}},
     "families.packshots.mapping.sku.option_map.Red: must contain only letters, digits and _"),
    ("families/packshots/mapping/bad-code", "a", "families.packshots.mapping.bad-code: mapping "
     "name (the PIM attribute code) must contain only letters, digits and _"),
    ("families/packshots/mapping", {}, "families.packshots.mapping: must define at least one "
     "mapping"),
    ("families", [], "families: must be a mapping of family name → family"),
    ("sources/bynder/families", ["packshots", "movies"], 'sources.bynder.families: unknown '
     'family "movies" (defined: packshots)'),
    ("sources/bynder", {"type": "folder"}, "sources.bynder.folder: required when type is "
     "folder"),
    ("sources/bynder/rest", DELETE, "sources.bynder.rest: required when type is rest"),
    ("sources/bynder/folder", {"path": "/x"}, "sources.bynder.folder: only used when type is "
     "folder"),
    ("sources/bynder/type", None, "sources.bynder.type: must have a value"),
    ("sources/bynder/rest/base_url", "ftp://dam", "sources.bynder.rest.base_url: must be an "
     "http(s) URL such as https://dam.example.com"),
    ("sources/bynder/rest/get_path", "/media/", "sources.bynder.rest.get_path: must be a path "
     "starting with / that contains {id}"),
    ("sources/bynder/rest/list/since_format", "yesterday", "sources.bynder.rest.list."
     'since_format: must be "iso", "epoch", "epoch_ms" or a strftime pattern such as '
     '"%Y-%m-%dT%H:%M:%SZ"'),
    ("sources/bynder/rest/list/since_template", "last_updated>=", "sources.bynder.rest.list."
     "since_template: must contain {since}, e.g. 'last_updated>=\"{since}\"'"),
    ("sources/bynder/rest/list/path", DELETE, "sources.bynder.rest.list.path: required"),
    ("sources/bynder/schedule", {}, "sources.bynder.schedule: give exactly one of every, crontab"),
    ("sources/bynder/schedule", {"every": "5m", "crontab": "* * * * *"},
     "sources.bynder.schedule: give exactly one of every, crontab (got both)"),
    ("sources/bynder/schedule", {"every": "5 minutes"}, "sources.bynder.schedule.every: must be "
     'a number of seconds or a duration such as 30s, 5m, 1h, 1d, got "5 minutes"'),
    ("sources/bynder/schedule", {"every": 0}, "sources.bynder.schedule.every: must be greater "
     "than 0"),
    ("sources/bynder/schedule", {"crontab": "*/5 * * *"}, "sources.bynder.schedule.crontab: "
     "must have 5 fields (minute hour day-of-month month day-of-week), got 4"),
    ("sources/bynder/schedule", {"crontab": "0 24 * * *"}, "sources.bynder.schedule.crontab: "
     "hour: 24 is out of range 0-23"),
    ("sources/bynder/schedule", {"crontab": "0 3 * * funday"}, "sources.bynder.schedule."
     'crontab: day of week: "funday" is not a number'),
    ("sources/bynder/schedule", {"crontab": "*/0 * * * *"}, "sources.bynder.schedule.crontab: "
     'minute: step in "*/0" must be at least 1'),
    ("sources/bynder/deletion_policy", {"action": "flag"}, "sources.bynder.deletion_policy."
     'attribute: required for deletion action "flag"'),
    ("sources/bynder/media", {"max_bytes": "lots"}, "sources.bynder.media.max_bytes: must be a "
     'number of bytes or a size such as 500KB, 200MB, 1GiB, got "lots"'),
    ("sources/bynder/media", {"allowed_hosts": ["https://cdn.example.com/x"]},
     "sources.bynder.media.allowed_hosts[0]: must be a host name such as \"cdn.example.com\" "
     "(no scheme, no path)"),
    ("sources/bynder/webhook", {"verification": "digest", "secret": "${DAM_TOKEN}"},
     'sources.bynder.webhook.payload: must contain {secret} for verification "digest"'),
    ("sources/bynder/queue", {"transport": "amqp", "name": "dam"},
     'sources.bynder.queue.url: required for transport "amqp"'),
    ("sources/bad name", {"type": "folder", "folder": {"path": "/x"}}, "sources.bad name: source "
     "name must contain only letters, digits, _ and -"),
    ("pim/locales", ["en_US"], None),
]


@pytest.mark.parametrize(("where", "value", "expected"), ERROR_CASES)
def test_error_table(where: str, value: Any, expected: str | None) -> None:
    data = put(base(), where, value)
    if expected is None:
        parse_config(data, ENV)
        return
    assert errors_of(data) == [expected]


def test_locales_and_channels_must_be_activated() -> None:
    data = put(base(), "pim", {"locales": ["en_US"], "channels": ["ecommerce"]})
    data = put(data, "families/packshots/locale", {"default": "fr_FR", "map": {"de": "de_DE"}})
    data = put(data, "families/packshots/channel", "print")
    data = put(data, "families/packshots/mapping/label", {"property": "d", "locale": "es_ES"})
    assert errors_of(data) == [
        'families.packshots.channel: channel "print" is not in pim.channels (ecommerce)',
        'families.packshots.locale.default: locale "fr_FR" is not in pim.locales (en_US)',
        'families.packshots.locale.map.de: locale "de_DE" is not in pim.locales (en_US)',
        'families.packshots.mapping.label.locale: locale "es_ES" is not in pim.locales (en_US)',
    ]


def test_five_mistakes_give_five_messages() -> None:
    data = base()
    data["sync"] = {"push_batch_size": 500}
    data["families"]["packshots"]["mapping"]["colors"] = {"property": "c", "type": "colour"}
    data["families"]["packshots"]["match"] = {"expression": "tags contains"}
    rest = data["sources"]["bynder"]["rest"]
    rest["pagination"] = {"type": "cursor", "page_param": "p"}
    rest["auth"]["token"] = "literal-token"
    errors = errors_of(data)
    assert len(errors) == 5, errors
    assert [e.split(":", 1)[0] for e in errors] == [
        "families.packshots.mapping.colors",
        "families.packshots.match.expression",
        "sources.bynder.rest.auth.token",
        "sources.bynder.rest.pagination.page_param",
        "sync.push_batch_size",
    ]


def test_top_level_problems() -> None:
    assert errors_of([1, 2]) == ["(top level): must be a mapping"]
    assert errors_of(None) == ["(top level): the configuration is empty"]
    assert errors_of({"families": base()["families"]}) == ["sources: required"]
    assert errors_of({**base(), "source": {}}) == ['source: unknown key; did you mean "sources"?']


# ---------------------------------------------------------------- secrets and env


def test_secrets_are_wrapped_and_never_in_messages() -> None:
    data = base()
    data["pim"] = {"max_in_flight": "${DAM_TOKEN}", "locales": ["${DAM_TOKEN}"]}
    data["families"]["packshots"]["mapping"]["x"] = {"property": "a", "type": "${DAM_TOKEN}"}
    data["families"]["packshots"]["match"] = {"expression": "${DAM_TOKEN} and"}
    data["sources"]["bynder"]["rest"]["pagination"]["type"] = "${DAM_TOKEN}"
    data["sources"]["bynder"]["rest"]["base_url"] = "${DAM_TOKEN}"
    errors = errors_of(data)
    assert len(errors) == 6
    text = "\n".join(errors)
    assert SECRET_VALUE not in text
    assert "pim.max_in_flight: must be an integer, got the value of ${DAM_TOKEN}" in errors
    assert (
        "families.packshots.mapping.x: unknown attribute type the value of ${DAM_TOKEN}"
        in text
    )


def test_secret_literal_in_the_file_is_not_echoed() -> None:
    data = put(base(), "sources/bynder/rest/auth/token", SECRET_VALUE)
    errors = errors_of(data, env={})
    assert SECRET_VALUE not in "\n".join(errors)


def test_secret_values_come_from_env_and_hide_in_repr() -> None:
    data = put(
        base(),
        "sources/bynder/rest/auth",
        {"type": "basic", "username": "${DAM_USER}", "password": "${DAM_PASSWORD}"},
    )
    config = parse_config(data, {"DAM_USER": "robot", "DAM_PASSWORD": SECRET_VALUE})
    auth = config.source("bynder").rest.auth  # type: ignore[union-attr]
    assert auth.username == "robot" and type(auth.username) is str
    assert isinstance(auth.password, Secret) and auth.password.reveal() == SECRET_VALUE
    assert SECRET_VALUE not in repr(config) and SECRET_VALUE not in str(config)


def test_empty_secret_is_an_error() -> None:
    assert errors_of(base(), env={"DAM_TOKEN": ""}) == [
        "sources.bynder.rest.auth.token: environment variable DAM_TOKEN is empty"
    ]


def test_env_interpolation_in_any_string() -> None:
    data = base()
    data["sources"]["bynder"]["rest"]["base_url"] = "http://${DAM_HOST}:${DAM_PORT:-8081}/"
    data["sources"]["bynder"]["rest"]["pagination"] = {
        "type": "page_number", "page_size": "${PAGE_SIZE}"
    }
    data["sources"]["bynder"]["schedule"] = {"every": "${EVERY:-5m}"}
    data["families"]["packshots"]["match"] = {"folder": "$${literal}/${SUB:-}x"}
    config = parse_config(data, {**ENV, "DAM_HOST": "dam.local", "PAGE_SIZE": "250"})
    rest = config.source("bynder").rest
    assert rest is not None
    assert rest.base_url == "http://dam.local:8081"
    assert type(rest.base_url) is str
    assert rest.pagination.page_size == 250
    assert config.source("bynder").schedule.every == 300.0  # type: ignore[union-attr]
    assert config.family("packshots").match.folder == "${literal}/x"


def test_unset_variables_are_reported_with_their_path_once() -> None:
    data = put(base(), "sources/bynder/rest/base_url", "https://${DAM_HOST}")
    data = put(data, "sync/chunk_size", "${CHUNK}")
    data = put(data, "families/packshots/match", {"folder": "${A} and ${B"})
    assert errors_of(data) == [
        "families.packshots.match.folder: environment variable A is not set",
        'families.packshots.match.folder: unterminated "${" (write "$${" for a literal "${")',
        "sources.bynder.rest.base_url: environment variable DAM_HOST is not set",
        "sync.chunk_size: environment variable CHUNK is not set",
    ]


def test_durations_and_sizes() -> None:
    data = base()
    # (backoff_max: at most the time budget's 3600 s, tests/test_time_budget.py)
    data["sync"] = {"backoff_base": "1.5s", "backoff_max": "0h50m", "quarantine_ttl": "7d",
                    "run_lock_ttl": 600}
    data["sources"]["bynder"]["media"] = {"max_bytes": "1.5 GiB", "timeout": "500ms"}
    config = parse_config(data, ENV)
    assert config.sync.backoff_base == 1.5
    assert config.sync.backoff_max == 3000.0
    assert config.sync.quarantine_ttl == 7 * 86400 and isinstance(config.sync.quarantine_ttl, int)
    assert config.source("bynder").media.max_bytes == int(1.5 * 1024**3)
    assert config.source("bynder").media.timeout == 0.5


def test_selector_and_mapping_objects() -> None:
    data = base()
    data["product_asset"] = {"property": "property_product_asset", "in": [True, "yes"]}
    data["families"]["packshots"]["mapping"]["ref"] = {
        "regex": r"^(?P<sku>[^_]+)_", "group": "sku", "type": "text"
    }
    data["families"]["packshots"]["mapping"]["flag"] = {"constant": False, "type": "boolean"}
    data["sources"]["bynder"]["families"] = "packshots"
    config = parse_config(data, ENV)
    assert config.product_asset.in_ == (True, "yes")
    mapping = {m.attribute: m for m in config.family("packshots").mapping}
    assert mapping["ref"].source.regex == r"^(?P<sku>[^_]+)_"
    assert mapping["ref"].source.group == "sku"
    assert mapping["flag"].source.constant is False
    assert mapping["image_url"].expected_type == "media_link"
    assert config.source("bynder").families == ("packshots",)


@settings(max_examples=150, deadline=None)
@given(
    where=st.sampled_from([
        "pim", "sync", "product_asset", "families/packshots", "families/packshots/match",
        "families/packshots/mapping/x", "families/packshots/locale", "sources/bynder",
        "sources/bynder/rest", "sources/bynder/rest/auth", "sources/bynder/rest/pagination",
        "sources/bynder/schedule", "sources/bynder/webhook", "sources/bynder/queue",
    ]),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
        | st.text(max_size=20) | st.sampled_from(["${DAM_TOKEN}", "${X", "5m", "(", "type"]),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "property", "every", "token", "regex", "expression",
                             "mode", "x", "path", "in", "group", "crontab"]) | st.text(max_size=5),
            children, max_size=4),
        max_leaves=10,
    ),
)
def test_random_values_only_ever_raise_config_error(where: str, value: Any) -> None:
    data = put(base(), where, value)
    try:
        parse_config(data, ENV)
    except ConfigError as exc:
        assert exc.errors and all(": " in e for e in exc.errors)
        assert SECRET_VALUE not in str(exc)


# ---------------------------------------------------------------- expression language

RECORD = {
    "id": "A-1",
    "tags": ["product", "summer"],
    "folder": "products/packshots",
    "filename": "allie-jean_1_model-picture.png",
    "property_product_asset": True,
    "width": 1200,
    "duration": None,
    "language": "fr_FR",
    "meta": {"sku": "allie-jean", "sizes": [1, 2, 3]},
    "flag": "false",
}

EXPRESSIONS: list[tuple[str, bool]] = [
    ('tags contains "product" and property_product_asset == true', True),
    ('tags contains "marketing"', False),
    ('folder startswith "products/"', True),
    ('folder endswith "/videos"', False),
    ('not (folder startswith "marketing/")', True),
    ('filename matches "_[0-9]+_"', True),
    ('filename matches "^marketing"', False),
    ("width >= 1000 and width < 2000", True),
    ("width > 1200", False),
    ('width == "1200"', False),  # JSON equality: a number is not a string
    ("width == 1200.0", True),
    ("property_product_asset == 1", False),  # true is not 1
    ('language in ["fr_FR", "de_DE"]', True),
    ('"summer" in tags', True),
    ('meta.sku == "allie-jean"', True),
    ("meta.sizes contains 2", True),
    ("meta.sizes.0 == 1", True),
    ("missing == null", True),
    ("duration == null and not duration", True),
    ("missing.deeper > 3", False),  # incomparable → false, never an error
    ('width < "a"', False),
    ("flag", False),  # "false" counts as false
    ("property_product_asset", True),
    ("false or (true and not false)", True),
    ('tags == ["product", "summer"]', True),
    ('meta == {"sku": "allie-jean", "sizes": [1, 2, 3]}', True),
    ('folder contains "pack" or folder contains "video"', True),
    ("id != \"A-1\"", False),
    ('not not tags contains "product"', True),
]


@pytest.mark.parametrize(("text", "expected"), EXPRESSIONS)
def test_expression_evaluation(text: str, expected: bool) -> None:
    assert compile_expression(text)(RECORD) is expected


EXPRESSION_ERRORS: list[tuple[str, int, str]] = [
    ("", 1, "the expression is empty"),
    ("   ", 1, "the expression is empty"),
    ('tags contains "product" and', 28, "expected a property name or a value, got the end of "
     "the expression"),
    ("folder = 'x'", 8, 'use "==" to compare'),
    ("folder == 'x'", 11, "strings use double quotes"),
    ('(tags contains "a"', 19, 'expected ")" to close the "(" at column 1, got the end of the '
     "expression"),
    ('tags "a"', 6, 'expected an operator (==, !=, <=, >=, <, >, contains, startswith, endswith, '
     'in, matches), got ""a""'),
    ('a == "unterminated', 6, "invalid literal: Unterminated string starting at"),
    ("a == 1 b", 8, 'expected "and", "or" or the end, got "b"'),
    ("a startswith 3", 14, '"startswith" needs a string on its right'),
    ("a in 3", 6, '"in" needs an array or a string on its right'),
    ('a matches "("', 11, "invalid regular expression: missing ), unterminated subpattern"),
    ("a matches b", 11, '"matches" needs a string literal on its right'),
    ("a == #", 6, 'unexpected character "#"'),
    ("(" * 100 + "a" + ")" * 100, 41, "the expression is nested too deeply"),
    ("[" * 5000, 1, "the expression is longer than 4000 characters"),
]


@pytest.mark.parametrize(("text", "column", "message"), EXPRESSION_ERRORS)
def test_expression_syntax_errors(text: str, column: int, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert info.value.column == column
    assert info.value.message.startswith(message)
    assert str(info.value).startswith(f"column {column}: ")


TOKENS = st.sampled_from([
    "and", "or", "not", "(", ")", "==", "!=", "<", ">=", "contains", "in", "startswith",
    "matches", "tags", "a.b.0", "folder", '"x"', '"("', "1", "-2.5", "true", "null", "[1,",
    "]", "{", "}", '"', "'", "=", "$", "[[[[", "\\",
])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(TOKENS, max_size=15).map(" ".join)))
def test_expression_random_text_never_raises_anything_else(text: str) -> None:
    try:
        predicate = compile_expression(text)
    except ExpressionError as exc:
        assert 1 <= exc.column <= len(text) + 1
        return
    assert predicate(RECORD) in (True, False)
    assert predicate({}) in (True, False)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(TOKENS, min_size=1, max_size=12).map(" ".join),
    st.dictionaries(st.sampled_from(["tags", "a", "folder", "b"]), JSON_VALUES, max_size=4),
)
def test_compiled_expressions_never_raise_on_any_record(text: str, record: dict[str, Any]) -> None:
    try:
        predicate = compile_expression(text)
    except ExpressionError:
        return
    assert predicate(record) in (True, False)


_CRON_ITEM = st.one_of(
    st.just("*"),
    st.integers(0, 12).map(str),
    st.tuples(st.integers(0, 12), st.integers(0, 12)).map(lambda r: f"{r[0]}-{r[1]}"),
    st.sampled_from(["mon", "fri", "sun", "SAT", "jan", "x", "mon-fri", "59", "0-23"]),
).flatmap(lambda item: st.one_of(
    st.just(item), st.integers(0, 61).map(lambda step: f"{item}/{step}")
))
_CRON_FIELD = st.lists(_CRON_ITEM, min_size=1, max_size=3).map(",".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_CRON_FIELD, min_size=5, max_size=5))
def test_a_crontab_accepted_at_load_is_accepted_by_celery(fields: list[str]) -> None:
    """connector/config/crontab.py validates without Celery; celeryconfig.py builds the
    schedule with `celery.schedules.crontab`: whatever the first accepts, the second must."""
    from celery.schedules import crontab

    from connector.config.crontab import crontab_errors

    if crontab_errors(" ".join(fields)):
        return
    minute, hour, day_of_month, month, day_of_week = fields
    crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month,
            day_of_week=day_of_week)
