"""examples/cloudinary.yaml against a Cloudinary that answers unlike its API: an HTML page
(what Cloudinary's API hosts answer for a wrong cloud name or credentials on some paths,
and what a proxy's login page looks like) and a 200 whose body is an error
(`{"error": {"message": ...}}`, Cloudinary's error shape). Each is a DamError naming the
source and what was expected; nothing is treated as an empty listing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from connector.config.loader import load_config
from connector.dam.base import DamError
from connector.dam.factory import build_source
from sandbox.server import BackgroundServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cloudinary.yaml"


class Answers:
    """A fake API host answering every request with `self.body` / `self.content_type`."""

    body = b""
    content_type = "application/json"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        Request(environ)
        return Response(self.body, status=200, content_type=self.content_type)(
            environ, start_response)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Answers, BackgroundServer]]:
    answers = Answers()
    server = BackgroundServer(answers).start()
    try:
        yield answers, server
    finally:
        server.stop()


def _source(server: BackgroundServer):
    env = {"CLOUDINARY_API_URL": server.url, "CLOUDINARY_CLOUD_NAME": "demo",
           "CLOUDINARY_API_KEY": "k", "CLOUDINARY_API_SECRET": "s3cr3t-value"}
    return build_source(load_config(EXAMPLE, env=env).source("cloudinary"))


def _list(source) -> None:
    for _page in source.changed_since(None):
        pass


def test_html_instead_of_json_names_the_source_and_the_expectation(host):
    answers, server = host
    answers.body = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    answers.content_type = "text/html; charset=utf-8"
    with pytest.raises(DamError) as err:
        _list(_source(server))
    assert str(err.value) == (
        f"cloudinary: expected JSON from {server.url}/v1_1/demo/resources/search, got an "
        "HTML page (Content-Type 'text/html; charset=utf-8'): the DAM's answer to wrong "
        "credentials or a wrong URL. Check sources.cloudinary.rest.auth.username and "
        "sources.cloudinary.rest.auth.password, sources.cloudinary.rest.base_url and "
        "sources.cloudinary.rest.list.path")


def test_a_200_with_an_error_body_is_an_error(host):
    answers, server = host
    answers.body = b'{"error": {"message": "Invalid api_key k"}}'
    answers.content_type = "application/json"
    with pytest.raises(DamError) as err:
        _list(_source(server))
    assert str(err.value) == (
        f"cloudinary: {server.url}/v1_1/demo/resources/search answered 200 with an error: "
        "Invalid api_key k (expected the list of records at 'resources')")
