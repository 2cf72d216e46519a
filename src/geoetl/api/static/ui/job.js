"use strict";
(() => {
  const { api, post, el, age, duration, when, statusBadge, flash, ready, roleAtLeast, uiUrl, root } = geoetl;
  const jobId = geoetl.page.job_id;
  const ACTIVE = ["queued", "running", "awaiting_approval"];
  let lastEvent = 0;
  let job = null;

  const fact = (dl, name, ...value) => dl.append(el("dt", {}, name), el("dd", {}, ...value));

  function summary(j) {
    const dl = document.getElementById("summary");
    dl.replaceChildren();
    fact(dl, "Status", statusBadge(j.status),
      j.progress && j.progress.total ? ` ${Math.round(j.progress.done)} of ${Math.round(j.progress.total)} stages` : "",
      j.progress && j.progress.message && j.status !== "succeeded" ? ` — ${j.progress.message}` : "");
    fact(dl, "Workflow", `${j.workflow} v${j.version}`, j.run > 1 ? ` (run ${j.run})` : "");
    if (j.base_id !== j.job_id) fact(dl, "First run", el("a", { href: uiUrl(`/jobs/${j.base_id}`) }, j.base_id.slice(0, 12)));
    fact(dl, "Job id", el("code", {}, j.job_id));
    if (j.params && j.params.source) fact(dl, "Source", el("code", {}, j.params.source));
    fact(dl, "Access level", j.access_level);
    if (j.submitted_by) fact(dl, "Submitted by", j.submitted_by);
    fact(dl, "Created", when(j.created_at), ` (${age(j.created_at)})`);
    fact(dl, "Started", when(j.started_at));
    fact(dl, "Finished", when(j.finished_at));
    fact(dl, "Duration", duration(j.duration_seconds));
    fact(dl, "Task attempts", String(j.attempts));
    document.getElementById("params").textContent = JSON.stringify(j.params, null, 2);
  }

  function actions(j) {
    const mine = roleAtLeast("admin") || (j.submitted_by && j.submitted_by === geoetl.me().name);
    const active = ACTIVE.includes(j.status);
    document.getElementById("cancel").hidden = !(roleAtLeast("publisher") && mine && active);
    document.getElementById("resubmit").hidden = !(roleAtLeast("publisher") && mine && !active);
    const waiting = j.status === "awaiting_approval" && roleAtLeast("admin");
    document.getElementById("approve").hidden = !waiting;
    document.getElementById("reject").hidden = !waiting;
  }

  function error(j) {
    const box = document.getElementById("error-box");
    box.hidden = !j.error;
    if (!j.error) return;
    document.getElementById("h-error").textContent = j.status === "cancelled" ? "Cancelled" : "Failed";
    const where = [];
    if (j.error.stage) where.push(`in stage “${j.error.stage}”`);
    if (j.error.task_id) where.push(`task ${j.error.task_id}`);
    if (j.error.attempt) where.push(`attempt ${j.error.attempt}`);
    document.getElementById("error-where").textContent =
      `${j.error.kind.replaceAll("_", " ")}${where.length ? " " + where.join(", ") : ""}:`;
    document.getElementById("error-message").textContent = j.error.message;
  }

  function outputs(j) {
    const ul = document.getElementById("outputs");
    ul.replaceChildren();
    const r = j.result || {};
    const urls = r.urls || {};
    const link = (label, href) => ul.append(el("li", {}, el("a", { href }, label)));
    if (j.status === "succeeded" && r.collection_id && (r.item_id || r.dataset_id)) {
      const id = r.item_id || r.dataset_id;
      link(`Item page: ${r.collection_id}/${id}`, uiUrl(`/items/${encodeURIComponent(r.collection_id)}/${encodeURIComponent(id)}`));
    }
    const walk = (prefix, value) => {
      if (typeof value === "string") {
        if (value.startsWith("/")) link(`${prefix}`, root + value);
      } else if (value && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix} ${k}` : k, v);
      }
    };
    walk("", urls);
    document.getElementById("outputs-box").hidden = ul.children.length === 0;
  }

  function stages(j) {
    const ol = document.getElementById("stages");
    ol.replaceChildren(...j.stages.map((s) => {
      const done = s.succeeded + s.failed + s.cancelled;
      const value = s.progress && s.progress.total ? s.progress.done : done;
      const max = s.progress && s.progress.total ? s.progress.total : Math.max(s.total, 1);
      return el("li", {},
        el("span", {}, s.name, " ", statusBadge(s.status)),
        el("progress", { max, value: s.status === "succeeded" ? max : value, "aria-label": `stage ${s.name}` }),
        el("span", { class: "count" }, `${s.succeeded}/${s.total} tasks`, s.failed ? `, ${s.failed} failed` : "",
          s.attempts > s.total && s.total ? `, ${s.attempts} attempts` : ""));
    }));
  }

  async function tasks() {
    const page = await api(`/jobs/${jobId}/tasks?limit=500`);
    const tbody = document.querySelector("#tasks tbody");
    tbody.replaceChildren(...page.items.map((t) => el("tr", {},
      el("td", {}, t.stage), el("td", {}, String(t.index)), el("td", {}, statusBadge(t.status)),
      el("td", {}, `${t.attempt} of ${t.max_attempts}`), el("td", {}, t.worker_id || "–"),
      el("td", {}, t.started_at && t.finished_at ? duration((Date.parse(t.finished_at) - Date.parse(t.started_at)) / 1000) : "–"),
      el("td", { class: "msg" }, t.error ? (t.error.message || JSON.stringify(t.error)) : ""))));
  }

  async function events() {
    const list = await api(`/jobs/${jobId}/events?after=${lastEvent}`);
    const ol = document.getElementById("events");
    for (const e of list) {
      lastEvent = Math.max(lastEvent, e.id);
      const bad = /fail|error|cancel|reject/.test(e.kind);
      ol.append(el("li", { class: bad ? "bad" : "" },
        el("time", { datetime: e.at }, new Date(e.at).toLocaleTimeString()),
        el("span", { class: "kind" }, e.kind.replaceAll("_", " ")), e.message));
    }
  }

  async function refresh() {
    try {
      job = await api(`/jobs/${jobId}`);
    } catch (e) {
      flash(e.status === 404 ? "No such job, or not one you may see (sign in?)." : `Could not load the job: ${e.message}`, true);
      return false;
    }
    summary(job); actions(job); error(job); outputs(job); stages(job);
    await Promise.all([tasks(), events()]).catch((e) => flash(`Could not load the details: ${e.message}`, true));
    return ACTIVE.includes(job.status);
  }

  async function decide(action) {
    try {
      const view = await post(`/jobs/${jobId}/${action}`);
      if (action === "resubmit" && view.job_id !== jobId) { location.assign(uiUrl(`/jobs/${view.job_id}`)); return; }
      flash(`Done: ${action}.`);
      loop();
    } catch (e) { flash(`Could not ${action}: ${e.message}`, true); }
  }
  for (const action of ["cancel", "resubmit", "approve", "reject"]) {
    document.getElementById(action).addEventListener("click", () => decide(action));
  }

  let timer = null;
  async function loop() {
    clearTimeout(timer);
    const active = await refresh();
    if (active) timer = setTimeout(loop, 1500);
  }
  ready.then(loop);
})();
