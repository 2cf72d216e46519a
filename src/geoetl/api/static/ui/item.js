"use strict";
(() => {
  const { api, raw, el, ready, uiUrl, root, when, token, copyButton } = geoetl;
  const { collection_id: cid, item_id: iid } = geoetl.page;
  const version = new URLSearchParams(location.search).get("version");
  const pinned = version ? `?version=${encodeURIComponent(version)}` : "";
  const meta = document.getElementById("meta");
  const status = document.getElementById("map-status");
  const map = L.map("map").setView([0, 0], 1);
  geoetl.basemap(map);

  const fact = (name, ...value) => meta.append(el("dt", {}, name), el("dd", {}, ...value));
  const round = (v) => (typeof v === "number" ? Number(v.toPrecision(7)) : v);

  // Tiles fetched with the caller's token (an <img> cannot send an Authorization header).
  const AuthTiles = L.GridLayer.extend({
    createTile(coords, done) {
      const img = document.createElement("img");
      img.alt = "";
      const url = L.Util.template(this.options.url, { z: coords.z, x: coords.x, y: coords.y });
      raw(url, { headers: { Accept: "image/*" } })
        .then((r) => r.blob())
        .then((blob) => {
          img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); };
          img.src = URL.createObjectURL(blob);
        })
        .catch((e) => done(e, img));
      return img;
    },
  });

  async function rasterLayer(item) {
    const link = item.links.find((l) => l.rel === "tiles");
    if (!link) { status.textContent = "No tiles for this item."; return; }
    const tj = await api(link.href);
    let [w, s, e, n] = tj.bounds;
    s = Math.max(s, -85.05); n = Math.min(n, 85.05);
    const bounds = L.latLngBounds([s, w], [n, e]);
    new AuthTiles({ url: tj.tiles[0], bounds, minNativeZoom: tj.minzoom, maxNativeZoom: tj.maxzoom, minZoom: 0, maxZoom: 22 })
      .on("tileload", () => { status.textContent = ""; })
      .addTo(map);
    map.fitBounds(bounds);
    return tj;
  }

  async function vectorLayer(item) {
    const layer = L.geoJSON(null, {
      style: { color: "#1f5fbf", weight: 2, fillOpacity: 0.25 },
      pointToLayer: (f, latlng) => L.circleMarker(latlng, { radius: 5 }),
      onEachFeature: (f, l) => l.bindPopup(() => el("table", {}, ...Object.entries(f.properties || {}).slice(0, 20)
        .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, String(v)))))),
    }).addTo(map);
    let matched = 0;
    let shown = 0;
    for (const link of item.links.filter((l) => l.rel === "items")) {
      const url = new URL(link.href);
      url.searchParams.set("limit", "2000");
      if (version) url.searchParams.set("version", version);
      const doc = await api(url.toString(), { headers: { Accept: "application/geo+json" } });
      layer.addData(doc);
      matched += doc.numberMatched || 0;
      shown += doc.numberReturned || doc.features.length;
    }
    if (layer.getBounds().isValid()) map.fitBounds(layer.getBounds());
    status.textContent = matched > shown ? `Showing ${shown} of ${matched} features.` : `${shown} features.`;
  }

  function fieldsTable(head, rows) {
    const table = document.getElementById("fields");
    table.tHead.replaceChildren(el("tr", {}, head.map((h) => el("th", { scope: "col" }, h))));
    table.tBodies[0].replaceChildren(...rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))));
    document.getElementById("fields-box").hidden = rows.length === 0;
  }

  async function vectorFields(item) {
    const rows = [];
    for (const link of item.links.filter((l) => l.rel === "items")) {
      const q = link.href.replace(/\/items(\?.*)?$/, "/queryables");
      try {
        const doc = await api(q);
        for (const [name, p] of Object.entries(doc.properties || {})) {
          if (name === "geometry") continue;
          rows.push([name, p.type || p.format || (p.$ref ? "geometry" : ""), p.title || ""]);
        }
      } catch (e) { /* fields stay unknown */ }
    }
    fieldsTable(["Field", "Type", "Title"], rows);
  }

  function bandsTable(item) {
    const rows = [];
    for (const [name, asset] of Object.entries(item.assets || {})) {
      (asset["raster:bands"] || []).forEach((b, i) => {
        const st = b.statistics || {};
        rows.push([`${name} ${i + 1}`, b.data_type || "", b.nodata ?? "", round(st.minimum) ?? "", round(st.maximum) ?? "",
          round(st.mean) ?? "", round(st.stddev) ?? "", st.valid_percent !== undefined ? `${round(st.valid_percent)} %` : ""]);
      });
    }
    fieldsTable(["Band", "Type", "Nodata", "Min", "Max", "Mean", "Std dev", "Valid"], rows);
  }

  function download(name, asset) {
    const a = el("a", { href: asset.href, download: "" }, asset.title || name);
    // Assets above the public level need the token: fetch it, then save the bytes.
    a.addEventListener("click", async (ev) => {
      if (!token()) return;
      ev.preventDefault();
      try {
        const blob = await (await raw(asset.href, { headers: { Accept: "*/*" } })).blob();
        const url = URL.createObjectURL(blob);
        const save = el("a", { href: url, download: `${iid}-${name}${asset.type && asset.type.includes("tiff") ? ".tif" : asset.type && asset.type.includes("parquet") ? ".parquet" : ""}` });
        document.body.append(save); save.click(); save.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (e) { geoetl.flash(`Download failed: ${e.message}`, true); }
    });
    const kind = asset.type && asset.type.includes("geotiff") ? "COG" : asset.type && asset.type.includes("parquet") ? "GeoParquet" : asset.type || "";
    const bytes = asset["file:size"];
    const size = bytes ? ` · ${bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`}` : "";
    return el("li", {}, a, ` ${kind}${size}`);
  }

  function urlRow(label, value) {
    const input = el("input", { type: "text", readonly: true, value, "aria-label": label });
    return el("li", {}, el("span", { class: "label" }, label), input, copyButton(input));
  }

  async function main() {
    let item;
    try {
      item = await api(`/stac/collections/${encodeURIComponent(cid)}/items/${encodeURIComponent(iid)}${pinned}`);
    } catch (e) {
      const box = document.getElementById("item-error");
      box.textContent = e.status === 404 ? "No such item, or not one you may see (sign in?)." : `Could not load the item: ${e.message}`;
      box.hidden = false;
      return;
    }
    const p = item.properties;
    const isRaster = p["geoetl:workflow"] === "process_raster";
    fact("Kind", isRaster ? `raster (${p["geoetl:raster_type"] || "?"})` : "vector");
    fact("CRS", p["proj:code"] || (p["proj:wkt2"] ? "custom (WKT2)" : isRaster ? "?" : "OGC:CRS84 (served)"));
    if (p["proj:shape"]) fact("Size", `${p["proj:shape"][1]} × ${p["proj:shape"][0]} pixels`);
    fact("Bounding box", (item.bbox || []).map((v) => round(v)).join(", "));
    if (p["geoetl:tier"]) fact("Tier", p["geoetl:tier"]);
    fact("Access level", p["geoetl:access_level"] || "–");
    fact("Version", String(p.version || "1"), p.deprecated ? " (deprecated)" : "");
    fact("Date", when(p.datetime || p.start_datetime));
    if (p["geoetl:report"]) {
      const r = p["geoetl:report"];
      fact("Features", `${r.read} read, ${r.repaired} repaired, ${Object.values(r.dropped || {}).reduce((a, b) => a + b, 0)} dropped`);
    }
    const src = p["geoetl:source"];
    if (src) fact("Source", el("code", {}, src.key || ""), src.sha256 ? ` (SHA-256 ${src.sha256.slice(0, 12)}…)` : "");
    if (p["geoetl:job_id"]) fact("Produced by", el("a", { href: uiUrl(`/jobs/${p["geoetl:job_id"]}`) }, `job ${p["geoetl:job_id"].slice(0, 12)}`));
    for (const rel of ["predecessor-version", "successor-version", "latest-version"]) {
      const l = item.links.find((x) => x.rel === rel);
      if (l) {
        const v = new URL(l.href).searchParams.get("version");
        fact(rel.replace("-", " "), el("a", { href: uiUrl(`/items/${encodeURIComponent(cid)}/${encodeURIComponent(iid)}${v ? `?version=${v}` : ""}`) }, v ? `version ${v}` : "current"));
      }
    }
    if ((p["geoetl:warnings"] || []).length) fact("Warnings", p["geoetl:warnings"].join("; "));

    document.getElementById("downloads").replaceChildren(...Object.entries(item.assets || {}).map(([n, a]) => download(n, a)));
    const urls = document.getElementById("urls");
    const self = item.links.find((l) => l.rel === "self");
    urls.append(urlRow("STAC item", self ? self.href : `${root}/stac/collections/${cid}/items/${iid}`));
    urls.append(urlRow("STAC API", `${root}/stac`));
    try {
      if (isRaster) {
        bandsTable(item);
        const tj = await rasterLayer(item);
        const tiles = item.links.find((l) => l.rel === "tiles");
        if (tiles) urls.append(urlRow("TileJSON", tiles.href));
        if (tj) urls.append(urlRow("XYZ tiles (QGIS)", tj.tiles[0]));
        for (const [n, a] of Object.entries(item.assets || {})) {
          if (a.type && a.type.includes("geotiff")) urls.append(urlRow(`GDAL / rasterio (${n})`, `/vsicurl/${a.href}`));
        }
      } else {
        await vectorFields(item);
        await vectorLayer(item);
        urls.append(urlRow("OGC API Features (QGIS)", `${root}/`));
        for (const l of item.links.filter((x) => x.rel === "items")) urls.append(urlRow("Features (GeoJSON)", l.href));
      }
    } catch (e) {
      status.textContent = `Could not draw the data: ${e.message}`;
    }
  }
  ready.then(main);
})();
