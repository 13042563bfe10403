"""API-server resources (reference/amplify-api.md §2): list with paging and RSQL, read, write back.

Listing follows the ``Link: <…>; rel="next"`` header at the configured (largest) page size, so a kind
costs one request per page and never one per object. Attribute write-back spends a request only when
a value differs, and resolves a lost optimistic-concurrency race (HTTP 428) by re-reading once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin

from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.amplify.wire import json_body
from amplify_billing.errors import ConflictError, UpstreamError
from amplify_billing.settings import AmplifySettings

log = logging.getLogger(__name__)

PRECONDITION_REQUIRED = 428  # the PUT carried a stale metadata.resourceVersion
WRITE_OK = (200, 201)


class ResourceClient:
    def __init__(self, transport: AmplifyTransport, settings: AmplifySettings) -> None:
        self._transport = transport
        self._settings = settings
        self._apis = f"{settings.central_url.rstrip('/')}/apis"

    def _collection_url(self, plural: str, scope: str | None, group: str) -> str:
        url = f"{self._apis}/{group}/{self._settings.api_version}"
        if scope is not None:
            scope_plural, _, scope_name = scope.partition("/")
            if not scope_plural or not scope_name or "/" in scope_name:
                raise ValueError(f"scope must be '<scopePlural>/<scopeName>', got {scope!r}")
            url += f"/{scope_plural}/{quote(scope_name, safe='')}"
        return f"{url}/{plural}"

    def pages(
        self, plural: str, *, query: str | None = None, scope: str | None = None, group: str = "catalog"
    ) -> Iterator[list[dict[str, Any]]]:
        """The listing one page at a time, so a caller can keep less than every resource in memory at once."""
        url: str | None = self._collection_url(plural, scope, group)
        first_page: dict[str, Any] = {"pageSize": self._settings.page_size, "page": 1}
        if query is not None:
            first_page["query"] = query
        params: dict[str, Any] | None = first_page
        visited: set[str] = set()
        while url is not None:
            response = self._transport.request("GET", url, params=params)
            page = json_body(response)
            if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
                raise UpstreamError(
                    f"Amplify answered GET {response.url} with something other than a list of resources",
                    system="amplify",
                )
            yield page
            visited.add(response.url)
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                break
            # the link carries page, pageSize and query itself; it may be absolute or path-relative
            url, params = urljoin(response.url, next_link), None
            if url in visited:
                raise UpstreamError(f"Amplify paging of {plural} loops back to {url}", system="amplify")

    def list(
        self, plural: str, *, query: str | None = None, scope: str | None = None, group: str = "catalog"
    ) -> list[dict[str, Any]]:
        """Every resource of a kind (optionally within one scope, filtered by an RSQL ``query``)."""
        items = [item for page in self.pages(plural, query=query, scope=scope, group=group) for item in page]
        log.debug("listed %d %s", len(items), plural)
        return items

    def get(self, plural: str, name: str, *, scope: str | None = None, group: str = "catalog") -> dict[str, Any]:
        url = f"{self._collection_url(plural, scope, group)}/{quote(name, safe='')}"
        return _resource(json_body(self._transport.request("GET", url)), url)

    def update_attributes(self, resource: Mapping[str, Any], attributes: Mapping[str, str]) -> dict[str, Any]:
        """Set ``attributes`` on ``resource`` with a full-body PUT; no request when nothing differs."""
        if _has_attributes(resource, attributes):
            return dict(resource)
        url = self._self_url(resource)
        response = self._transport.request(
            "PUT", url, json=_with_attributes(resource, attributes), expected=(*WRITE_OK, PRECONDITION_REQUIRED)
        )
        if response.status_code == PRECONDITION_REQUIRED:
            # someone changed it since we listed it: merge into the current version, try once more
            log.info("stale resourceVersion on %s; re-reading it once", url)
            current = _resource(json_body(self._transport.request("GET", url)), url)
            if _has_attributes(current, attributes):
                return current
            response = self._transport.request(
                "PUT", url, json=_with_attributes(current, attributes), expected=(*WRITE_OK, PRECONDITION_REQUIRED)
            )
            if response.status_code == PRECONDITION_REQUIRED:
                raise ConflictError(
                    f"Amplify {url} changed twice while its attributes were being written (HTTP 428); "
                    "the next run will try again",
                    system="amplify",
                    status=PRECONDITION_REQUIRED,
                )
        return _resource(json_body(response), url)

    def put_subresource(
        self, resource: Mapping[str, Any], subresource: str, value: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write one subresource, e.g. ``approval`` with ``{"state": "approved", "reason": …}``."""
        url = f"{self._self_url(resource)}/{subresource}"
        response = self._transport.request("PUT", url, json={subresource: dict(value)}, expected=WRITE_OK)
        return _resource(json_body(response), url)

    def _self_url(self, resource: Mapping[str, Any]) -> str:
        metadata = resource.get("metadata")
        self_link = metadata.get("selfLink") if isinstance(metadata, Mapping) else None
        if not isinstance(self_link, str) or not self_link.startswith("/"):
            raise UpstreamError(
                f"Amplify resource {resource.get('kind')}/{resource.get('name')} has no metadata.selfLink",
                system="amplify",
            )
        return f"{self._apis}{self_link}"


def _has_attributes(resource: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    current = resource.get("attributes")
    current = current if isinstance(current, Mapping) else {}
    return all(current.get(key) == value for key, value in attributes.items())


def _with_attributes(resource: Mapping[str, Any], attributes: Mapping[str, str]) -> dict[str, Any]:
    current = resource.get("attributes")
    merged = {**(current if isinstance(current, Mapping) else {}), **attributes}
    return {**resource, "attributes": merged}


def _resource(body: Any, url: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UpstreamError(f"Amplify answered {url} with something other than a resource", system="amplify")
    return body
