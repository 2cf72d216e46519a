"use strict";
(() => {
  const { api, el, ready, uiUrl, when } = geoetl;
  const form = document.getElementById("search-form");
  const tbody = document.querySelector("#results tbody");
  const info = document.getElementById("result-info");
  const errorBox = document.getElementById("search-error");
  const bboxInput = document.getElementById("bbox");
  const drawButton = document.getElementById("draw");
  const mapNode = document.getElementById("map");
  const LIMIT = 20;
  let tokens = [null];  // paging tokens: tokens[i] fetches page i
  let pageIndex = 0;

  const map = L.map("map", { worldCopyJump: true }).setView([20, 0], 1);
  geoetl.catalogMap = map;  // for scripts and tests driving the page
  geoetl.basemap(map);
  const footprints = L.geoJSON(null, { style: { color: "#1f5fbf", weight: 2, fillOpacity: 0.15 } }).addTo(map);
  // A light world outline would need data; the footprints and the box draw on a plain map.
  let box = null;
  const showBox = (bounds) => {
    if (box) box.remove();
    box = bounds ? L.rectangle(bounds, { color: "#b3261e", weight: 2, fill: false, dashArray: "6 4" }).addTo(map) : null;
  };

  // Drawing a box: press "Draw box", then drag on the map (the map stops panning meanwhile).
  let drawing = false;
  let start = null;
  function setDrawing(on) {
    drawing = on;
    drawButton.setAttribute("aria-pressed", on ? "true" : "false");
    mapNode.classList.toggle("drawing", on);
    if (on) map.dragging.disable(); else map.dragging.enable();
  }
  drawButton.addEventListener("click", () => setDrawing(!drawing));
  map.on("mousedown", (ev) => { if (drawing) { start = ev.latlng; showBox(null); } });
  map.on("mousemove", (ev) => { if (drawing && start) showBox(L.latLngBounds(start, ev.latlng)); });
  map.on("mouseup", (ev) => {
    if (!drawing || !start) return;
    const b = L.latLngBounds(start, ev.latlng);
    start = null;
    setDrawing(false);
    const r = (v) => Math.round(v * 1e5) / 1e5;
    bboxInput.value = [r(b.getWest()), r(b.getSouth()), r(b.getEast()), r(b.getNorth())].join(",");
    showBox(b);
    search(true);
  });

  function parseBox() {
    const v = bboxInput.value.trim();
    if (!v) return null;
    const n = v.split(",").map(Number);
    if (n.length !== 4 || n.some(Number.isNaN)) throw new Error("the bounding box needs four numbers: west,south,east,north");
    return n;
  }

  function query() {
    const q = new URLSearchParams({ limit: LIMIT });
    const bbox = parseBox();
    if (bbox) q.set("bbox", bbox.join(","));
    const coll = document.getElementById("collection").value;
    if (coll) q.set("collections", coll);
    const dt = document.getElementById("datetime").value.trim();
    if (dt) q.set("datetime", dt);
    const filters = [];
    const text = document.getElementById("q").value.trim();
    if (text) filters.push(`id LIKE '%${text.replaceAll("'", "''").replace(/[%_]/g, "\\$&")}%'`);
    const prop = document.getElementById("filter").value.trim();
    if (prop) filters.push(`(${prop})`);
    if (filters.length) q.set("filter", filters.join(" AND "));
    if (tokens[pageIndex]) q.set("token", tokens[pageIndex]);
    return q;
  }

  async function search(fresh) {
    errorBox.hidden = true;
    if (fresh) { tokens = [null]; pageIndex = 0; }
    let doc;
    try {
      const q = query();
      const bbox = parseBox();
      showBox(bbox ? [[bbox[1], bbox[0]], [bbox[3], bbox[2]]] : null);
      doc = await api(`/stac/search?${q}`);
    } catch (e) {
      errorBox.textContent = `Search refused: ${e.message}`;
      errorBox.hidden = false;
      return;
    }
    tbody.replaceChildren(...doc.features.map((f) => el("tr", { "data-item": `${f.collection}/${f.id}` },
      el("td", {}, el("a", { href: uiUrl(`/items/${encodeURIComponent(f.collection)}/${encodeURIComponent(f.id)}`) }, f.id)),
      el("td", {}, f.collection),
      el("td", {}, (f.properties["geoetl:workflow"] || "").replace("process_", "") + (f.properties["geoetl:raster_type"] ? ` (${f.properties["geoetl:raster_type"]})` : "")),
      el("td", {}, when(f.properties.datetime || f.properties.start_datetime)))));
    footprints.clearLayers();
    for (const f of doc.features) if (f.geometry) footprints.addData(f);
    const next = (doc.links || []).find((l) => l.rel === "next");
    tokens[pageIndex + 1] = next ? new URL(next.href).searchParams.get("token") : null;
    document.getElementById("next").disabled = !next;
    document.getElementById("prev").disabled = pageIndex === 0;
    const first = pageIndex * LIMIT;
    info.textContent = doc.features.length
      ? `Items ${first + 1}–${first + doc.features.length}${doc.numberMatched !== undefined ? ` of ${doc.numberMatched}` : ""}.`
      : "No items match.";
    if (!parseBox() && footprints.getBounds().isValid()) map.fitBounds(footprints.getBounds(), { maxZoom: 8 });
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    search(true);
    collections(document.getElementById("q").value.trim()).catch(() => {});
  });
  document.getElementById("clear").addEventListener("click", () => {
    form.reset(); showBox(null); search(true); collections("").catch(() => {});
  });
  document.getElementById("next").addEventListener("click", () => { pageIndex += 1; search(false); });
  document.getElementById("prev").addEventListener("click", () => { pageIndex = Math.max(0, pageIndex - 1); search(false); });

  // Collections: all of them in the select; the table follows the free text (STAC q).
  async function collections(text) {
    const doc = await api(`/stac/collections${text ? `?q=${encodeURIComponent(text)}` : ""}`);
    const select = document.getElementById("collection");
    const rows = document.querySelector("#collections tbody");
    rows.replaceChildren();
    for (const c of doc.collections) {
      if (![...select.options].some((o) => o.value === c.id)) select.append(el("option", { value: c.id }, c.id));
      rows.append(el("tr", {}, el("td", {}, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); select.value = c.id; search(true); } }, c.id)),
        el("td", {}, c.title || ""), el("td", { class: "msg" }, c.description || "")));
    }
  }

  ready.then(async () => {
    try {
      await collections("");
    } catch (e) {
      errorBox.textContent = `Could not list the collections: ${e.message}`;
      errorBox.hidden = false;
    }
    search(true);
  });
})();
