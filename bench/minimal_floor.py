"""A true minimal floor: the same sync written with nothing but `requests` and `json`.

`bench/reference_sync.py`'s floor is built from the connector's own classes, so it cannot
show what those classes cost. `minimal_sync` below is what a developer would write for this
one catalogue in an afternoon: the DAM's pages (`GET /api/v4/media/?page=N&limit=100`),
the demo mapping (examples/demo.yaml) hard-coded, every user guide's PDF downloaded from
the DAM and uploaded to the PIM (`POST /asset-media-files`, as many uploads as the
pipeline makes), new tag options created once, then one bulk `PATCH …/assets` per 100
assets of a family — over one kept-alive session per host (TLS by default). It checks
nothing the PIM would check anyway (the records the connector quarantines are sent, and
the PIM refuses most of them per line: no extra request; a guide whose file cannot be
downloaded is left out), keeps no state, retries nothing.

Both sides in one invocation, against the same sandbox DAM and a reset PIM, so they share
the machine's noise: the floor runs first, in this process (its CPU: this process's
user+sys around the function); then the pipeline (one worker on every queue, `-c 2`; its
CPU: the worker process trees', as every benchmark measures it — bench/common.py). The
PIM's assets after each side are compared (`pim_assets`).

    .venv/bin/python bench/minimal_floor.py --assets 5000
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.common import ALL_QUEUES, DAM_TOKEN, Harness, Sandbox, add_transport_args, emit

TARGET_RATIO = 1.5
_GUIDE = re.compile(r"_user_guide_[a-z]{2}_[A-Z]{2}\.pdf$")
_GUIDE_SKU = re.compile(r"^(.+?)_user_guide_")
#: the sandbox's media-file codes hold a sha1 of the content and an upload counter
_MEDIA_CODE = re.compile(r"[0-9a-f]/[0-9a-f]/[0-9a-f]/[0-9a-f]/[0-9a-f]{40}_")


def minimal_sync(dam_url: str, dam_token: str, pim_url: str, pim_login: dict[str, str],
                 verify: str | bool) -> dict[str, int]:
    """Every DAM asset → the PIM, the demo mapping hard-coded: DAM pages, media files,
    new tag options, bulk PATCHes of ≤ 100 per family. Returns request and asset counts."""
    dam, pim = requests.Session(), requests.Session()
    for session in (dam, pim):
        session.verify = verify
        session.trust_env = False  # the cheapest client: no proxy/netrc lookup per request
    dam.headers["Authorization"] = f"Bearer {dam_token}"
    token = pim.post(f"{pim_url}/api/oauth/v1/token", json={
        "grant_type": "password", "username": pim_login["username"],
        "password": pim_login["password"]},
        auth=(pim_login["client_id"], pim_login["secret"]), timeout=30)
    token.raise_for_status()
    pim.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    api = f"{pim_url}/api/rest/v1/asset-families"
    tags_url = f"{api}/packshots/attributes/tags/options"
    known_tags = {o["code"] for o in pim.get(tags_url, timeout=30).json()}
    counts = {"seen": 0, "pushed": 0, "ok": 0, "bulk_requests": 0, "media_uploads": 0,
              "option_writes": 0, "dam_pages": 0}
    batches: dict[str, list[dict[str, Any]]] = {"packshots": [], "user_guides": [],
                                                "videos": []}

    def value(data: Any, locale: str | None = None) -> list[dict[str, Any]]:
        return [{"locale": locale, "channel": None, "data": data}]

    def number(raw: Any) -> Any:
        try:
            return str(int(raw)) if float(raw).is_integer() else repr(float(raw))
        except (TypeError, ValueError):
            return raw  # the PIM refuses it (that asset's line), as for any bad value

    def flush(family: str) -> None:
        body, batches[family] = batches[family], []
        response = pim.patch(f"{api}/{family}/assets", data=json.dumps(body),
                             headers={"Content-Type": "application/json"}, timeout=60)
        response.raise_for_status()
        counts["bulk_requests"] += 1
        counts["pushed"] += len(body)
        counts["ok"] += sum(1 for line in response.json() if line["status_code"] < 300)

    page = 1
    while True:
        listed = dam.get(f"{dam_url}/api/v4/media/", params={"page": page, "limit": 100},
                         timeout=30)
        listed.raise_for_status()
        records = json.loads(listed.content)
        counts["dam_pages"] += 1
        if not records:
            break
        for r in records:
            if not r.get("id") or not r.get("dateModified"):
                continue
            counts["seen"] += 1
            tags, folder = r.get("tags") or [], r.get("folder") or ""
            if "product" not in tags and not folder.startswith("products/"):
                continue
            upper = r["id"] == r["id"].upper() and r["id"] != r["id"].lower()  # has letters
            code = r["id"].replace("-", "_") + ("__cu" if upper else "")
            if folder == "products/packshots":
                family = "packshots"
                colors = [c.strip() for c in (r.get("property_colors") or "").split(",")]
                values = {"image_url": value(r["original"]),
                          "label": value(r["description"], "en_US"),
                          "main_colors": value([{"gray": "grey"}.get(c, c) for c in colors if c]),
                          "tags": value(tags),
                          "product_ref": value(r["property_sku"]),
                          "width": value(number(r["width"])),
                          "height": value(number(r["height"]))}
                if r.get("property_disclaimer"):
                    values["disclaimer"] = value(r["property_disclaimer"], "fr_FR")
                for tag in tags:
                    if tag not in known_tags:
                        pim.patch(f"{tags_url}/{tag}", json={"code": tag, "labels": {}},
                                  timeout=30).raise_for_status()
                        known_tags.add(tag)
                        counts["option_writes"] += 1
            elif _GUIDE.search(r.get("filename") or ""):
                family = "user_guides"
                if r.get("language") not in ("en_US", "fr_FR", "de_DE"):
                    continue  # the PIM's locales (demo.yaml): no upload for a refused guide
                try:
                    content = dam.get(r["original"], timeout=60)
                    content.raise_for_status()
                except requests.RequestException:
                    continue  # no file, no asset (the connector quarantines it)
                uploaded = pim.post(f"{pim_url}/api/rest/v1/asset-media-files", timeout=60,
                                    files={"file": (r["filename"], content.content)})
                uploaded.raise_for_status()
                counts["media_uploads"] += 1
                sku = _GUIDE_SKU.match(r["filename"])
                values = {"guide_url": value(r["original"]),
                          "title": value(r.get("description") or "User guide", r["language"]),
                          "product_ref": value(sku.group(1) if sku else None),
                          "file": value(uploaded.headers["Asset-media-file-code"])}
            elif r.get("type") == "video":
                family = "videos"
                values = {"video_url": value(r["original"]), "title": value(r["name"]),
                          "duration": value(number(r["duration"])),
                          "product_ref": value(r["property_sku"])}
            else:
                continue
            batches[family].append({"code": code, "values": values})
            if len(batches[family]) == 100:
                flush(family)
        page += 1
    for family in batches:
        if batches[family]:
            flush(family)
    dam.close()
    pim.close()
    return counts


def _pim_assets(pim: Sandbox) -> dict[str, str]:
    """What the PIM holds: asset code → its values (canonical JSON), every family."""
    out: dict[str, str] = {}
    for family in ("packshots", "user_guides", "videos"):
        for asset in pim.admin(f"assets/{family}"):
            canon = json.dumps(asset.get("values"), sort_keys=True)
            out[f"{family}/{asset['code']}"] = _MEDIA_CODE.sub("", canon)
    return out


def _compare(floor: dict[str, str], pipeline: dict[str, str]) -> dict[str, int]:
    """How far apart the PIM's assets are after each side (0, 0, 0: identical)."""
    both = floor.keys() & pipeline.keys()
    return {"only_floor": len(floor.keys() - both), "only_pipeline": len(pipeline.keys() - both),
            "different_values": sum(1 for k in both if floor[k] != pipeline[k]),
            "identical": sum(1 for k in both if floor[k] == pipeline[k])}


def _handshakes(world: Harness) -> dict[str, dict[str, int]]:
    assert world.pim is not None and world.dam is not None
    keys = ("connections", "tls_handshakes", "media_uploads", "bulk_asset_requests", "media")
    out: dict[str, dict[str, int]] = {}
    for name, sandbox in (("pim", world.pim), ("dam", world.dam)):
        counters = sandbox.counters()
        out[name] = {k: int(counters[k]) for k in keys if isinstance(counters.get(k), int)}
    return out


def _diff(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
          ) -> dict[str, dict[str, int]]:
    return {h: {k: after[h][k] - before[h][k] for k in after[h]} for h in after}


def run(assets: int, concurrency: int, tls: bool) -> tuple[dict[str, Any], list[str]]:
    with Harness(assets, label="bench-min", tls=tls) as world:
        assert world.pim is not None and world.dam is not None and world.dam.url
        creds = world.credentials()
        login = {"client_id": creds.client_id, "secret": creds.client_secret.reveal(),
                 "username": creds.username, "password": creds.password.reveal()}
        verify: str | bool = str(world.ca_dir / "ca.pem") if world.ca_dir else True
        conn0 = _handshakes(world)
        cpu0, wall0 = time.process_time(), time.monotonic()
        floor = minimal_sync(world.dam.url, DAM_TOKEN, creds.url, login, verify)
        floor_cpu, floor_wall = time.process_time() - cpu0, time.monotonic() - wall0
        floor_conn = _diff(_handshakes(world), conn0)
        floor_assets = _pim_assets(world.pim)
        world.pim.post("reset")           # an empty PIM again: the pipeline creates too
        world.apply_structure()
        world.start_worker(ALL_QUEUES, concurrency)
        world.wait_workers()
        conn1 = _handshakes(world)
        result = world.run()
        pipe_conn = _diff(_handshakes(world), conn1)
        pipe_assets = _pim_assets(world.pim)
    pipeline_ms = result.worker_cpu / assets * 1000
    floor_ms = floor_cpu / assets * 1000
    ratio = pipeline_ms / floor_ms if floor_ms else 0.0
    compared = _compare(floor_assets, pipe_assets)
    met = result.report["state"] == "succeeded" and 0 < ratio <= TARGET_RATIO
    counts = result.counts
    out: dict[str, Any] = {
        "assets": assets, "tls": tls,
        "floor": {**floor, "cpu_s": round(floor_cpu, 3), "wall_s": round(floor_wall, 2),
                  "cpu_ms_per_asset": round(floor_ms, 4), "hosts": floor_conn},
        "pipeline": {"state": result.report["state"],
                     "pushed": int(counts.get("created", 0)) + int(counts.get("updated", 0)),
                     "cpu_s": round(result.worker_cpu, 3),
                     "cpu_ms_per_asset": round(pipeline_ms, 4),
                     "duration_s": round(result.duration, 2),
                     "sandbox_cpu_s": result.sandbox_cpu, "worker_concurrency": concurrency,
                     "hosts": pipe_conn},
        "pim_assets": compared, "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO,
        "met": met,
    }

    def hosts(conn: dict[str, dict[str, int]]) -> str:
        return (f"{conn['pim']['bulk_asset_requests']} bulk requests, "
                f"{conn['pim']['media_uploads']} media uploads; "
                + ", ".join(f"{h} {c['connections']} connections/{c['tls_handshakes']} "
                            "handshakes" for h, c in conn.items()))

    lines = [
        f"minimal floor (requests + json): {floor_cpu:.2f} s CPU for {assets} DAM assets = "
        f"{floor_ms:.3f} ms/asset ({floor_wall:.1f} s wall; {hosts(floor_conn)})",
        f"pipeline (worker trees): {result.worker_cpu:.2f} s CPU = {pipeline_ms:.3f} ms/asset "
        f"({result.duration:.1f} s wall; {hosts(pipe_conn)})",
        f"PIM assets after each side: {compared['identical']} identical, "
        f"{compared['different_values']} with other values, {compared['only_floor']} only "
        f"after the floor, {compared['only_pipeline']} only after the pipeline",
        f"ratio {ratio:.2f} (target ≤ {TARGET_RATIO}: {'MET' if met else 'MISSED'})",
    ]
    return out, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2)
    add_transport_args(parser)
    args = parser.parse_args(argv)
    out, lines = run(args.assets, args.concurrency, tls=not args.plain_http)
    emit("minimal_floor", out, lines)
    return 0 if out["pipeline"]["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
