// geoetl console: shared helpers. The token stays in this tab's sessionStorage and is
// sent only as an Authorization header on fetch calls to this server's API.
"use strict";
const geoetl = (() => {
  const KEY = "geoetl.token";
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const root = page.root;
  const ROLES = ["anonymous", "reader", "publisher", "admin"];

  const token = () => sessionStorage.getItem(KEY);
  const setToken = (t) => (t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY));

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const t = token();
    if (t && !h.Authorization) h.Authorization = `Bearer ${t}`;
    return h;
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function problem(response) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      if (Array.isArray(body.errors)) detail += ": " + body.errors.map((e) => e.msg || JSON.stringify(e)).join("; ");
    } catch (e) { /* not JSON */ }
    return new ApiError(response.status, detail);
  }

  // fetch against the API (a path under the root, or a full URL of this server).
  async function raw(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    const url = path.startsWith("http") ? path : root + path;
    const response = await fetch(url, opts);
    if (!response.ok) throw await problem(response);
    return response;
  }
  async function api(path, options) {
    const response = await raw(path, options);
    return response.status === 204 ? null : response.json();
  }
  function post(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
  }

  // Build an element: el("td", {class: "x"}, "text", child, …). Text is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function age(iso) {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 120) return `${seconds.toFixed(1)} s`;
    if (seconds < 7200) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  const statusBadge = (s) => el("span", { class: `status ${s}` }, String(s).replace("_", " "));

  function flash(text, isError) {
    const f = document.getElementById("flash");
    f.textContent = text;
    f.className = isError ? "flash error" : "flash";
    f.hidden = !text;
  }

  // Who is calling: shows what its role allows ([data-needs]), hides [data-needs-not].
  let me = { name: "anonymous", role: "anonymous", authenticated: false, sees: [] };
  const roleAtLeast = (role) => ROLES.indexOf(me.authenticated ? me.role : "anonymous") >= ROLES.indexOf(role);
  function applyRole() {
    document.querySelectorAll("[data-needs]").forEach((n) => {
      const allowed = roleAtLeast(n.dataset.needs);
      if (n.dataset.needs === "admin" || n.dataset.needs === "publisher") n.dataset.allowed = allowed ? "1" : "";
      if (!n.hasAttribute("data-conditional")) n.hidden = !allowed;
    });
    document.querySelectorAll("[data-needs-not]").forEach((n) => { n.hidden = roleAtLeast(n.dataset.needsNot); });
    const who = document.getElementById("whoami");
    who.textContent = me.authenticated ? `${me.name} (${me.role}) · sign out` : "Sign in";
  }
  const ready = (async () => {
    if (token()) {
      try {
        me = await api("/auth/whoami");
      } catch (e) {
        if (e.status === 401) {
          setToken(null);
          flash("Your token is no longer valid (unknown, revoked or expired): you are browsing anonymously.", true);
        }
      }
    }
    applyRole();
    return me;
  })();

  function copyButton(input) {
    return el("button", {
      type: "button", class: "secondary", "aria-label": `Copy ${input.getAttribute("aria-label") || "URL"}`,
      onclick: async (ev) => {
        input.select();
        try { await navigator.clipboard.writeText(input.value); } catch (e) { document.execCommand("copy"); }
        ev.target.textContent = "Copied";
        setTimeout(() => { ev.target.textContent = "Copy"; }, 1500);
      },
    }, "Copy");
  }

  // Country outlines under the data, from this server (no tile server, works offline).
  function basemap(map) {
    const pane = map.createPane("basemap");
    pane.style.zIndex = 150;  // under raster tiles (200) and vectors (400)
    pane.style.pointerEvents = "none";
    map.getContainer().style.background = "#dbe9f4";
    fetch(page.world)
      .then((r) => r.json())
      .then((world) => L.geoJSON(world, {
        pane: "basemap", interactive: false,
        style: { color: "#a3adb8", weight: 0.8, fillColor: "#f4f2ec", fillOpacity: 1 },
      }).addTo(map))
      .catch(() => { /* the data still draws */ });
  }

  return {
    page, basemap, root, token, setToken, api, raw, post, el, age, duration, when, statusBadge, flash,
    ready, roleAtLeast, me: () => me, copyButton, ApiError,
    uiUrl: (path) => root + "/ui" + path,
  };
})();
