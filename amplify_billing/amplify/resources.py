"""API-server resources (reference/amplify-api.md §2): list with paging and RSQL, read, write back.

Listing follows the ``Link: <…>; rel="next"`` header at the configured (largest) page size, so a kind
costs one request per page and never one per object. A missing ``Link`` ends the walk, but proves nothing
by itself: every page's ``X-Axway-Total-Count`` (sent on GET, reference §2.3) is checked against what the walk
yielded, and the caller learns whether the listing is complete (``ListingProof``) before it acts on what is
absent from it. Attribute write-back spends a request only when a value differs, and resolves a lost
optimistic-concurrency race (HTTP 428) by re-reading once. The catalog version of each kind is the configured one,
or with ``api_version: auto`` the one the kind answers at (``versions``): an unscoped listing is its own probe, so a
tenant that serves ``v1`` costs no request more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from amplify_billing.amplify.transport import AmplifyTransport
from amplify_billing.amplify.versions import CATALOG_VERSIONS, ApiVersions, neither
from amplify_billing.amplify.wire import json_body
from amplify_billing.errors import ConflictError, NotFoundError, UnreachableError, UpstreamError
from amplify_billing.settings import AmplifySettings

log = logging.getLogger(__name__)

PRECONDITION_REQUIRED = 428  # the PUT carried a stale metadata.resourceVersion
WRITE_OK = (200, 201)


TOTAL_HEADER = "X-Axway-Total-Count"
Resources = list[dict[str, Any]]


@dataclass
class ListingProof:
    """What one listing proved about itself, filled in while its pages are walked.

    Complete only when the walk reached its last page, every page announced the same total, and the walk
    yielded exactly that many distinct resources. A total that changed between pages (a resource added or
    removed meanwhile) or a page without the header proves nothing: the next run lists again."""

    plural: str
    listed: int = 0
    totals: list[int | None] = field(default_factory=list)
    finished: bool = False
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def total(self) -> int | None:
        known = [t for t in self.totals if t is not None]
        return max(known) if known else None

    @property
    def complete(self) -> bool:
        steady = bool(self.totals) and None not in self.totals and len(set(self.totals)) == 1
        return self.finished and steady and self.listed == self.totals[0]

    def describe(self) -> str:
        """``listed 150 of 300 subscriptions (X-Axway-Total-Count)``, or what else kept it unproven."""
        if None in self.totals:
            return f"listed {self.listed} {self.plural}; Amplify sent no {TOTAL_HEADER} to prove that is all"
        if len(set(self.totals)) > 1:
            counts = " then ".join(str(t) for t in dict.fromkeys(self.totals))
            return f"listed {self.listed} {self.plural} while {TOTAL_HEADER} changed ({counts})"
        return f"listed {self.listed} of {self.total} {self.plural} ({TOTAL_HEADER})"

    def add(self, page: list[dict[str, Any]], total: int | None) -> None:
        self.totals.append(total)
        for index, item in enumerate(page):
            metadata = item.get("metadata")
            ident = metadata.get("id") if isinstance(metadata, Mapping) else None
            self._seen.add(str(ident or item.get("name") or f"#{len(self.totals)}:{index}"))
        self.listed = len(self._seen)


def _total(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


class ResourceClient:
    def __init__(self, transport: AmplifyTransport, settings: AmplifySettings) -> None:
        self._transport = transport
        self._settings = settings
        self._apis = f"{settings.central_url.rstrip('/')}/apis"
        self.versions = ApiVersions(settings.api_version)
        self._probe_lock = threading.Lock()
        # The newest version of each resource this process wrote, by selfLink. A second write to the same resource
        # in one run (approve, then link) must carry the new resourceVersion, not the listing's: a stale one costs a
        # 428, a re-read and a retry, at 25 requests a minute. Only what a later write needs is kept (version and
        # attributes), not whole resources: an initial run writes to every subscription.
        self._written: dict[str, tuple[Any, Mapping[str, Any]]] = {}
        self._written_lock = threading.Lock()

    def api_version(self, plural: str, group: str = "catalog") -> str:
        """The version ``plural`` is served at. With ``auto``, a kind not listed yet is probed with a one-item page,
        once per run (an unscoped listing that ran first has already settled it)."""
        known = self.versions.chosen(plural) if group == "catalog" else None
        if known is None and group == "catalog":
            self._probe(plural, {"pageSize": 1})
            known = self.versions.chosen(plural)
        return known or (self.versions.configured if not self.versions.auto else "v1")

    def _collection_url(self, plural: str, scope: str | None, group: str, version: str | None = None) -> str:
        url = f"{self._apis}/{group}/{version or self.api_version(plural, group)}"
        if scope is not None:
            scope_plural, _, scope_name = scope.partition("/")
            if not scope_plural or not scope_name or "/" in scope_name:
                raise ValueError(f"scope must be '<scopePlural>/<scopeName>', got {scope!r}")
            url += f"/{scope_plural}/{quote(scope_name, safe='')}"
        return f"{url}/{plural}"

    def pages(
        self,
        plural: str,
        *,
        query: str | None = None,
        scope: str | None = None,
        group: str = "catalog",
        proof: ListingProof | None = None,
        sort: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """The listing one page at a time, so a caller can keep less than every resource in memory at once.

        ``proof``: filled in page by page; complete once the walk ended and the totals agree with it. ``sort``:
        ``<field>,ASC|DESC`` (reference §2.3), e.g. to read only the newest page."""
        first_page: dict[str, Any] = {"pageSize": self._settings.page_size, "page": 1}
        if query is not None:
            first_page["query"] = query
        if sort is not None:
            first_page["sort"] = sort
        response = self._first_page(plural, scope, group, first_page)
        visited: set[str] = set()
        while True:
            page = json_body(response)
            if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
                raise UpstreamError(
                    f"Amplify answered GET {response.url} with something other than a list of resources",
                    system="amplify",
                )
            if proof is not None:
                proof.add(page, _total(response.headers.get(TOTAL_HEADER)))
            yield page
            visited.add(response.url)
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                if proof is not None:
                    proof.finished = True
                break
            # the link carries page, pageSize and query itself; it may be absolute or path-relative
            url = urljoin(response.url, next_link)
            if _origin(url) != _origin(response.url):
                # the request carries the bearer token: it goes nowhere but the API it was issued for
                raise UpstreamError(
                    f"Amplify's next-page link of {plural} points to another origin ({_origin(url)}); "
                    "refused, so the token is never sent there. Check amplify.central_url",
                    system="amplify",
                )
            if url in visited:
                raise UpstreamError(f"Amplify paging of {plural} loops back to {url}", system="amplify")
            response = self._transport.request("GET", url)

    def _first_page(self, plural: str, scope: str | None, group: str, params: dict[str, Any]) -> requests.Response:
        """The first page of a listing; an unscoped catalog listing of a kind whose version is not known yet is its
        own probe. A top-level collection always exists: a 404 on its first page means the base URL or the API
        version is wrong, which no retry cures (exit 3, naming the settings), not that a resource is missing. A
        scope (a plan's quotas) may be gone: its 404 is the resource's."""
        if group == "catalog" and scope is None and self.versions.chosen(plural) is None:
            return self._probe(plural, params)
        url = self._collection_url(plural, scope, group)
        if scope is not None:
            return self._transport.request("GET", url, params=params)
        try:
            return self._transport.request("GET", url, params=params)
        except NotFoundError:
            raise UnreachableError(
                f"Amplify has no {plural} listing at {url} (HTTP 404); check amplify.central_url (the API server of "
                f"Amplify Central for your region) and amplify.api_version ({self._settings.api_version})",
                system="amplify",
                status=404,
            ) from None

    def _probe(self, plural: str, params: dict[str, Any]) -> requests.Response:
        """GET the unscoped catalog collection at ``v1``, then at ``v1alpha1`` if ``v1`` answers 404 (at an unscoped
        collection only an unserved version can); the first that answers is the kind's version for the run."""
        with self._probe_lock:  # one probe per kind, whichever thread asks first
            refused: list[str] = []
            known = self.versions.chosen(plural)
            for version in (known,) if known is not None else CATALOG_VERSIONS:
                url = self._collection_url(plural, None, "catalog", version)
                try:
                    response = self._transport.request("GET", url, params=params)
                except NotFoundError:
                    if known is not None:
                        raise
                    refused.append(version)
                    continue
                self.versions.choose(plural, version, tuple(refused))
                return response
        raise UnreachableError(neither(plural), system="amplify", status=404)

    def list(
        self, plural: str, *, query: str | None = None, scope: str | None = None, group: str = "catalog"
    ) -> list[dict[str, Any]]:
        """Every resource of a kind (optionally within one scope, filtered by an RSQL ``query``)."""
        return self.listing(plural, query=query, scope=scope, group=group)[0]

    def listing(
        self, plural: str, *, query: str | None = None, scope: str | None = None, group: str = "catalog"
    ) -> tuple[Resources, ListingProof]:
        """``list``, and what the listing proved about its completeness."""
        proof = ListingProof(plural)
        pages = self.pages(plural, query=query, scope=scope, group=group, proof=proof)
        items = [item for page in pages for item in page]
        log.debug("listed %d %s (%s)", len(items), plural, "complete" if proof.complete else proof.describe())
        return items, proof

    def get(self, plural: str, name: str, *, scope: str | None = None, group: str = "catalog") -> dict[str, Any]:
        url = f"{self._collection_url(plural, scope, group)}/{quote(name, safe='')}"
        return _resource(json_body(self._transport.request("GET", url)), url)

    def update_attributes(self, resource: Mapping[str, Any], attributes: Mapping[str, str]) -> dict[str, Any]:
        """Set ``attributes`` on ``resource`` with a full-body PUT; no request when nothing differs."""
        resource = self._newest(resource)
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
        return self._wrote(_resource(json_body(response), url))

    def put_subresource(
        self, resource: Mapping[str, Any], subresource: str, value: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write one subresource, e.g. ``approval`` with ``{"state": "approved", "reason": …}``."""
        url = f"{self._self_url(resource)}/{subresource}"
        response = self._transport.request("PUT", url, json={subresource: dict(value)}, expected=WRITE_OK)
        return self._wrote(_resource(json_body(response), url))

    def _newest(self, resource: Mapping[str, Any]) -> Mapping[str, Any]:
        """``resource`` with the resourceVersion and attributes of this process's last write to it, if any.

        A main-resource PUT carries the full body; subresources (approval, state) in it are ignored by the server,
        so the listed body with the newest version and attributes is the current one for that PUT."""
        with self._written_lock:
            known = self._written.get(_self_link(resource))
        if known is None:
            return resource
        version, attributes = known
        metadata = resource.get("metadata")
        return {
            **resource,
            "metadata": {**(metadata if isinstance(metadata, Mapping) else {}), "resourceVersion": version},
            "attributes": dict(attributes),
        }

    def _wrote(self, resource: dict[str, Any]) -> dict[str, Any]:
        link = _self_link(resource)
        metadata = resource.get("metadata")
        if link and isinstance(metadata, Mapping):
            attributes = resource.get("attributes")
            with self._written_lock:
                self._written[link] = (
                    metadata.get("resourceVersion"),
                    dict(attributes) if isinstance(attributes, Mapping) else {},
                )
        return resource

    def _self_url(self, resource: Mapping[str, Any]) -> str:
        metadata = resource.get("metadata")
        self_link = metadata.get("selfLink") if isinstance(metadata, Mapping) else None
        if not isinstance(self_link, str) or not self_link.startswith("/"):
            raise UpstreamError(
                f"Amplify resource {resource.get('kind')}/{resource.get('name')} has no metadata.selfLink",
                system="amplify",
            )
        return f"{self._apis}{self_link}"


def _self_link(resource: Mapping[str, Any]) -> str:
    metadata = resource.get("metadata")
    return str(metadata.get("selfLink") or "") if isinstance(metadata, Mapping) else ""


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


def _origin(url: str) -> tuple[str, str]:
    """Scheme and host (with port) of ``url``: what must stay the same from page to page."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
