"use strict";
(() => {
  const { api, post, el, age, duration, statusBadge, flash, ready, roleAtLeast, uiUrl } = geoetl;
  const ACTIVE = ["queued", "running", "awaiting_approval"];
  const LIMIT = 25;
  const params = new URLSearchParams(location.search);
  const fStatus = document.getElementById("f-status");
  const fWorkflow = document.getElementById("f-workflow");
  const tbody = document.querySelector("#jobs-table tbody");
  let offset = Number(params.get("offset") || 0);
  fStatus.value = params.get("status") || "";
  const shown = new Map();  // job_id -> signature of its row

  const dataset = (j) => {
    const r = j.result || {};
    const p = j.params || {};
    const id = r.item_id || r.dataset_id || p.item_id || p.dataset_id;
    const coll = r.collection_id || p.collection_id;
    const file = typeof p.source === "string" ? p.source.split("/").pop() : "";
    return [coll && id ? `${coll}/${id}` : (id || ""), file && file !== id ? file : ""].filter(Boolean).join(" · ");
  };
  const maySteer = (j) => roleAtLeast("publisher") &&
    (roleAtLeast("admin") || (j.submitted_by && j.submitted_by === geoetl.me().name));

  async function act(job, action) {
    try {
      const view = await post(`/jobs/${job.job_id}/${action}`);
      flash(`${action === "cancel" ? "Cancelled" : "Resubmitted"} job ${view.job_id.slice(0, 12)}.`);
      refresh();
    } catch (e) { flash(`Could not ${action} the job: ${e.message}`, true); }
  }

  function row(j) {
    const active = ACTIVE.includes(j.status);
    const actions = el("td", { class: "actions" });
    if (maySteer(j)) {
      actions.append(active
        ? el("button", { type: "button", class: "secondary", "aria-label": `Cancel job ${j.job_id.slice(0, 12)}`, onclick: () => act(j, "cancel") }, "Cancel")
        : el("button", { type: "button", class: "secondary", "aria-label": `Resubmit job ${j.job_id.slice(0, 12)}`, onclick: () => act(j, "resubmit") }, "Resubmit"));
    }
    return el("tr", { "data-job": j.job_id, "data-status": j.status },
      el("td", {}, el("a", { href: uiUrl(`/jobs/${j.job_id}`) }, el("code", {}, j.job_id.slice(0, 12)))),
      el("td", {}, statusBadge(j.status), j.progress && active && j.progress.total
        ? el("progress", { max: j.progress.total, value: j.progress.done, "aria-label": `progress of ${j.job_id.slice(0, 12)}` }) : null),
      el("td", {}, j.workflow),
      el("td", { class: "msg" }, dataset(j)),
      el("td", { class: "age", "data-created": j.created_at }, age(j.created_at)),
      el("td", {}, duration(j.duration_seconds)),
      actions);
  }

  async function refresh() {
    const q = new URLSearchParams({ limit: LIMIT, offset });
    if (fStatus.value) q.set("status", fStatus.value);
    if (fWorkflow.value) q.set("workflow", fWorkflow.value);
    try {
      const page = await api(`/jobs?${q}`);
      const ids = page.items.map((j) => j.job_id);
      // Keep rows whose content did not change (focus and selection stay put).
      for (const tr of [...tbody.children]) if (!ids.includes(tr.dataset.job)) { tr.remove(); shown.delete(tr.dataset.job); }
      let before = null;
      for (const j of [...page.items].reverse()) {
        const sig = JSON.stringify([j.status, j.progress, j.duration_seconds, j.submitted_by, geoetl.me().name]);
        let tr = tbody.querySelector(`tr[data-job="${j.job_id}"]`);
        if (!tr || shown.get(j.job_id) !== sig) {
          const fresh = row(j);
          if (tr) tr.replaceWith(fresh); else tbody.insertBefore(fresh, before);
          tr = fresh;
          shown.set(j.job_id, sig);
        }
        before = tr;
      }
      // order newest first: rebuild order if needed
      ids.forEach((id) => tbody.append(tbody.querySelector(`tr[data-job="${id}"]`)));
      tbody.querySelectorAll("td.age").forEach((td) => { td.textContent = age(td.dataset.created); });
      document.getElementById("jobs-empty").hidden = page.items.length > 0;
      document.getElementById("page-info").textContent = page.total
        ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : "";
      document.getElementById("prev").disabled = offset === 0;
      document.getElementById("next").disabled = offset + page.items.length >= page.total;
      document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    } catch (e) {
      flash(`Could not load the jobs: ${e.message}`, true);
    }
  }

  function navigate() {
    const q = new URLSearchParams();
    if (fStatus.value) q.set("status", fStatus.value);
    if (fWorkflow.value) q.set("workflow", fWorkflow.value);
    if (offset) q.set("offset", offset);
    history.replaceState(null, "", `${location.pathname}${q.toString() ? "?" + q : ""}`);
    tbody.replaceChildren();
    shown.clear();
    refresh();
  }
  fStatus.addEventListener("change", () => { offset = 0; navigate(); });
  fWorkflow.addEventListener("change", () => { offset = 0; navigate(); });
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); navigate(); });
  document.getElementById("next").addEventListener("click", () => { offset += LIMIT; navigate(); });

  ready.then(async () => {
    try {
      for (const wf of await api("/workflows")) fWorkflow.append(el("option", { value: wf.name }, wf.name));
    } catch (e) { /* the list still works without the filter */ }
    fWorkflow.value = params.get("workflow") || "";
    await refresh();
    // Live: poll every 2 s while the tab is visible.
    setInterval(() => { if (!document.hidden) refresh(); }, 2000);
  });
})();
