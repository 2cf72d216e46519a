"""HTML views of the OGC API resources: readable pages, with a map where there are features."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse


def static_url(request: Request, path: str) -> str:
    """URL of a file shipped in ``geoetl/api/static`` (served at ``/static``)."""
    return str(request.url_for("static", path=path))


def wants_html(request: Request) -> bool:
    """``f=html``, or a browser asking for HTML first."""
    f = request.query_params.get("f")
    if f:
        return f.lower() == "html"
    accept = request.headers.get("accept", "")
    return accept.startswith("text/html")


def _links(links: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<li><a href="{escape(link["href"])}">{escape(link.get("rel", ""))}</a> '
        f"{escape(link.get('type', ''))}</li>"
        for link in links
    )
    return f"<ul>{rows}</ul>"


def table(rows: list[dict[str, Any]]) -> str:
    """An HTML table of the rows (keys of the first row as columns)."""
    if not rows:
        return "<p>None.</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{escape(str(k))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(r.get(k, '')))}</td>" for k in keys) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(
    request: Request, title: str, body: str, geojson: dict[str, Any] | None = None
) -> HTMLResponse:
    """A page; with ``geojson`` it shows the features on a map.

    Leaflet comes from geoetl itself (no CDN): the map draws without internet access;
    the OpenStreetMap background only shows where it can be reached.
    """
    leaflet = static_url(request, "vendor/leaflet/leaflet")
    map_html = ""
    if geojson is not None:
        # Inside <script> nothing of the data may read as markup: '<', '>' and '&'
        # are escaped as JSON unicode escapes (the values are unchanged for the script).
        data = (
            json.dumps(geojson)
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
        )
        map_html = f"""
<div id="map" style="height:420px"></div>
<script src="{leaflet}.js"></script>
<script>
  const map = L.map("map");
  L.tileLayer("https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png",
    {{attribution: "&copy; OpenStreetMap contributors"}}).addTo(map);
  const layer = L.geoJSON({data}).addTo(map);
  const b = layer.getBounds();
  if (b.isValid()) {{ map.fitBounds(b); }} else {{ map.setView([0, 0], 1); }}
</script>"""
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - geoetl</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="{static_url(request, "vendor/leaflet/leaflet.css")}">
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}</style></head>
<body><h1>{escape(title)}</h1>{map_html}{body}</body></html>"""
    )


def landing_page(request: Request, doc: dict[str, Any]) -> HTMLResponse:
    """The landing page."""
    console = str(request.url_for("ui_home"))
    intro = (
        f"<p>{escape(doc['description'])}</p>"
        f'<p><a href="{escape(console)}"><strong>Open the web console</strong></a>: '
        "upload files, follow jobs, browse the catalog.</p>"
    )
    return page(request, doc["title"], intro + _links(doc["links"]))


def conformance_page(request: Request, doc: dict[str, Any]) -> HTMLResponse:
    """The conformance classes."""
    items = "".join(f"<li>{escape(c)}</li>" for c in doc["conformsTo"])
    return page(request, "Conformance", f"<ul>{items}</ul>")


def collections_page(request: Request, doc: dict[str, Any]) -> HTMLResponse:
    """Every collection."""
    rows = [
        {
            "id": c["id"],
            "title": c["title"],
            "features": c.get("geoetl:feature_count", ""),
            "items": next(link["href"] for link in c["links"] if link["rel"] == "items"),
        }
        for c in doc["collections"]
    ]
    return page(request, "Collections", table(rows))


def collection_page(request: Request, doc: dict[str, Any]) -> HTMLResponse:
    """One collection, its extent on the map."""
    bbox = (doc["extent"]["spatial"]["bbox"] or [None])[0]
    outline = None
    if bbox:
        x0, y0, x1, y1 = bbox
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        outline = {"type": "Polygon", "coordinates": [ring]}
    return page(
        request,
        doc["title"],
        f"<p>{doc.get('geoetl:feature_count', '')} features</p>{_links(doc['links'])}",
        outline,
    )


def items_page(request: Request, title: str, doc: dict[str, Any]) -> HTMLResponse:
    """A page of features on a map, with their properties."""
    rows = [{"id": f["id"], **f["properties"]} for f in doc["features"]]
    summary = f"<p>{doc['numberReturned']} of {doc['numberMatched']} features</p>"
    return page(request, title, summary + _links(doc["links"]) + table(rows), doc)
