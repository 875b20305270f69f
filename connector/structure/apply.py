"""`apply_structure`: create or PATCH what a structure spec declares, one report item per thing.

Order per family: the family itself (without `attribute_as_main_media`, whose attribute may
not exist yet), then its attributes, then their options, then the family again with its
main media, naming convention and product link rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from connector.pim.errors import PimAuthError, PimError
from connector.structure.diff import changed_fields, labels_differ, same_value
from connector.structure.spec import (
    IMMUTABLE_ATTRIBUTE_FIELDS,
    OPTION_TYPES,
    AttributeSpec,
    FamilySpec,
    StructureSpec,
)

Action = Literal["created", "updated", "unchanged", "conflict", "failed"]
Kind = Literal["family", "attribute", "option"]

# What Akeneo creates by itself with every new asset family (docs/akeneo.md): a dry run
# compares the file with these, as the real apply compares it with what the PIM answers
# once the family exists; the same `(fields)` are reported for both.
PIM_DEFAULT_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "label": {"code": "label", "type": "text", "value_per_locale": True,
              "value_per_channel": False, "labels": {}},
    "media": {"code": "media", "type": "media_file", "media_type": "image",
              "value_per_locale": False, "value_per_channel": False, "labels": {}},
}
_DEFAULT_FIELDS = {"label": ("type", "value_per_locale"), "media": ("type", "media_type")}
BY_PIM = "created by the PIM with the family (not by this file)"


class StructureWriter(Protocol):
    """The part of `AkeneoClient` that `apply_structure` uses."""

    def get_asset_family(self, code: str) -> dict[str, Any] | None: ...

    def upsert_asset_family(self, code: str, body: dict[str, Any]) -> int: ...

    def get_attributes(self, family: str) -> list[dict[str, Any]]: ...

    def upsert_attribute(self, family: str, code: str, body: dict[str, Any]) -> int: ...

    def get_options(self, family: str, attribute: str) -> list[dict[str, Any]]: ...

    def upsert_option(self, family: str, attribute: str, code: str, body: dict[str, Any]) -> int:
        ...


@dataclass(frozen=True)
class ApplyItem:
    kind: Kind
    code: str                      # "packshots", "packshots.media", "packshots.main_colors.red"
    action: Action
    fields: tuple[str, ...] = ()   # fields written (created) or changed (updated)
    message: str | None = None     # conflicts and failures say why

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": self.code,
            "action": self.action,
            "fields": list(self.fields),
            "message": self.message,
        }


@dataclass
class ApplyReport:
    items: list[ApplyItem] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not any(i.action in ("conflict", "failed") for i in self.items)

    @property
    def changed(self) -> bool:
        return any(i.action in ("created", "updated") for i in self.items)

    def count(self, action: Action) -> int:
        return sum(1 for i in self.items if i.action == action)

    def to_dict(self) -> dict[str, Any]:
        actions: tuple[Action, ...] = ("created", "updated", "unchanged", "conflict", "failed")
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "summary": {a: self.count(a) for a in actions},
            "items": [i.to_dict() for i in self.items],
        }


class _FamilyApplier:
    """Applies one family; one instance per family keeps the live state in one place."""

    def __init__(self, client: StructureWriter, spec: FamilySpec, dry_run: bool) -> None:
        self.client = client
        self.spec = spec
        self.dry_run = dry_run
        self.items: list[ApplyItem] = []

    def _write(self, call: Callable[[], object]) -> None:
        if not self.dry_run:
            call()

    def run(self) -> list[ApplyItem]:
        spec, client = self.spec, self.client
        live_family = client.get_asset_family(spec.code)
        family_created = live_family is None
        if live_family is None:
            # Without main media: its attribute cannot exist before the family does.
            body = {"code": spec.code, "labels": spec.properties.get("labels") or {}}
            try:
                self._write(lambda: client.upsert_asset_family(spec.code, body))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("family", spec.code, "failed", message=str(exc)))
                return self.items
            # Re-read: the PIM fills defaults and creates its own attributes on creation;
            # a dry run assumes Akeneo's (`label`, `media`, the main media).
            if self.dry_run:
                live_family = {**body, "attribute_as_main_media": "media"}
                live_attrs = {c: dict(a) for c, a in PIM_DEFAULT_ATTRIBUTES.items()}
            else:
                live_family = client.get_asset_family(spec.code) or body
                live_attrs = self._live_attributes()
        else:
            live_attrs = self._live_attributes()

        for attr in spec.attributes:
            self._apply_attribute(attr, live_attrs.get(attr.code))
        if family_created:
            self._report_pim_attributes(live_attrs)
        self._apply_family(live_family, live_attrs, family_created)
        return self.items

    def _report_pim_attributes(self, live_attrs: dict[str, dict[str, Any]]) -> None:
        """The attributes the PIM created with the family that the file does not declare:
        reported, so that a dry run and the real apply say the same."""
        for code, live in live_attrs.items():
            if self.spec.attribute(code) is not None:
                continue
            fields_ = _DEFAULT_FIELDS.get(code) or tuple(
                k for k in ("type", "value_per_locale", "value_per_channel", "media_type")
                if live.get(k)
            )
            item = ApplyItem("attribute", f"{self.spec.code}.{code}", "created", fields_, BY_PIM)
            self.items.append(item)

    def _live_attributes(self) -> dict[str, dict[str, Any]]:
        return {a["code"]: a for a in self.client.get_attributes(self.spec.code)}

    def _apply_attribute(self, attr: AttributeSpec, live: dict[str, Any] | None) -> None:
        family, client = self.spec.code, self.client
        item_code = f"{family}.{attr.code}"
        desired = attr.body()
        if live is None:
            try:
                self._write(lambda: client.upsert_attribute(family, attr.code, desired))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("attribute", item_code, "failed", message=str(exc)))
                return
            fields_ = tuple(k for k in desired if k != "code")
            self.items.append(ApplyItem("attribute", item_code, "created", fields_))
            self._apply_options(attr, [])
            return
        conflicts = [
            f"{name} is {live.get(name)!r} in the PIM but {desired[name]!r} in the file"
            for name in IMMUTABLE_ATTRIBUTE_FIELDS
            if name in desired and not same_value(name, desired[name], live.get(name))
        ]
        if conflicts:
            message = "; ".join(conflicts) + (
                " (the PIM cannot change type, value_per_locale or value_per_channel of an "
                "existing attribute: rename it in the file or delete it in the PIM)"
            )
            self.items.append(ApplyItem("attribute", item_code, "conflict", message=message))
            return
        changed = changed_fields({k: v for k, v in desired.items() if k != "code"}, live)
        if changed:
            body = {"code": attr.code, "type": attr.type, **{k: desired[k] for k in changed}}
            if "media_type" in desired:  # Akeneo requires it on every media attribute PATCH
                body.setdefault("media_type", desired["media_type"])
            try:
                self._write(lambda: client.upsert_attribute(family, attr.code, body))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("attribute", item_code, "failed", message=str(exc)))
                return
            self.items.append(ApplyItem("attribute", item_code, "updated", tuple(changed)))
        else:
            self.items.append(ApplyItem("attribute", item_code, "unchanged"))
        live_options = (
            client.get_options(family, attr.code) if attr.options and attr.type in OPTION_TYPES
            else []
        )
        self._apply_options(attr, live_options)

    def _apply_options(self, attr: AttributeSpec, live_options: list[dict[str, Any]]) -> None:
        if not attr.options:
            return
        family, client = self.spec.code, self.client
        live = {o["code"].casefold(): o for o in live_options}
        for option in attr.options:
            item_code = f"{family}.{attr.code}.{option.code}"
            current = live.get(option.code.casefold())
            if current is not None and not labels_differ(option.labels, current.get("labels")):
                self.items.append(ApplyItem("option", item_code, "unchanged"))
                continue
            body = {"code": option.code, "labels": option.labels}
            try:
                if not self.dry_run:
                    client.upsert_option(family, attr.code, option.code, body)
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("option", item_code, "failed", message=str(exc)))
                continue
            action: Action = "created" if current is None else "updated"
            self.items.append(ApplyItem("option", item_code, action, ("labels",)))

    def _apply_family(
        self, live: dict[str, Any], live_attrs: dict[str, Any], created: bool
    ) -> None:
        spec, client = self.spec, self.client
        main = spec.properties.get("attribute_as_main_media")
        if main and main not in live_attrs and spec.attribute(main) is None:
            message = f"attribute_as_main_media {main!r} is not an attribute of the family"
            self.items.append(ApplyItem("family", spec.code, "conflict", message=message))
            return
        changed = changed_fields(spec.properties, live)
        if changed:
            body = {"code": spec.code, **{k: spec.properties[k] for k in changed}}
            try:
                self._write(lambda: client.upsert_asset_family(spec.code, body))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("family", spec.code, "failed", message=str(exc)))
                return
        if created:
            fields_ = tuple(k for k in spec.properties if spec.properties[k] or k == "labels")
            self.items.insert(0, ApplyItem("family", spec.code, "created", fields_))
        elif changed:
            self.items.insert(0, ApplyItem("family", spec.code, "updated", tuple(changed)))
        else:
            self.items.insert(0, ApplyItem("family", spec.code, "unchanged"))


class Invalidator(Protocol):
    def invalidate(self, code: str | None = None) -> None: ...


def apply_structure(
    client: StructureWriter,
    spec: StructureSpec,
    *,
    cache: Invalidator | None = None,
    dry_run: bool = False,
) -> ApplyReport:
    """Create or update everything `spec` declares; report one item per family/attr/option.

    A failed write is reported ("failed", with the PIM's message) and the rest goes on;
    an authentication error stops everything (nothing else could succeed).
    """
    report = ApplyReport(dry_run=dry_run)
    for family in spec.families:
        items = _FamilyApplier(client, family, dry_run).run()
        report.items.extend(items)
        touched = any(i.action in ("created", "updated") for i in items)
        if touched and cache is not None and not dry_run:
            cache.invalidate(family.code)
    return report
