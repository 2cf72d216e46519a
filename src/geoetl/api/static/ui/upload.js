"use strict";
(() => {
  const { api, el, ready, token, uiUrl, root } = geoetl;
  const { options: INGEST_OPTIONS, raster_suffixes: RASTER } = geoetl.page;
  const form = document.getElementById("upload-form");
  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const chosen = document.getElementById("chosen");
  const fields = document.getElementById("option-fields");
  const submit = document.getElementById("submit");
  const errorBox = document.getElementById("upload-error");
  let files = [];
  let workflows = {};

  const workflowOf = (name) => {
    const dot = name.lastIndexOf(".");
    const suffix = dot >= 0 ? name.slice(dot).toLowerCase() : "";
    return RASTER.includes(suffix) ? "process_raster" : "process_vector";
  };
  const size = (n) => (n > 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`);

  // Where /ingest reads an option differently from the workflow's own params.
  const HELP = { target_crs: "Default EPSG:4326; 'native' keeps a raster's own CRS." };

  // One schema property -> a labelled control.
  function control(name, prop, only) {
    const id = `opt-${name}`;
    const variants = prop.anyOf ? prop.anyOf.filter((v) => v.type !== "null") : [prop];
    const base = Object.assign({}, variants[0] || {}, prop);
    const label = (prop.title || name) + (only ? ` (${only} only)` : "");
    const text = HELP[name] || prop.description;
    const help = text ? el("p", { class: "help", id: `${id}-help` }, text) : null;
    const described = help ? `${id}-help` : null;
    if (base.type === "boolean") {
      return el("div", { class: "check" }, el("label", { for: id },
        el("input", { type: "checkbox", id, name, checked: prop.default === true, "aria-describedby": described }), label), help);
    }
    let node;
    if (base.enum) {
      let values = base.enum;
      if (name === "access_level") {
        const sees = geoetl.me().sees || [];
        values = values.filter((v) => sees.includes(v));
      }
      const def = values.includes(prop.default) ? prop.default : values[values.length - 1];
      node = el("select", { id, name, "aria-describedby": described },
        values.map((v) => el("option", { value: v, selected: v === def }, v)));
    } else if (base.type === "integer" || base.type === "number") {
      node = el("input", { type: "number", id, name, min: base.minimum, max: base.maximum,
        step: base.type === "integer" ? 1 : "any", placeholder: prop.default ?? "", "aria-describedby": described });
    } else {
      node = el("input", { type: "text", id, name, placeholder: prop.default ?? "",
        "aria-describedby": described, autocomplete: "off" });
    }
    return el("div", {}, el("label", { for: id }, label), node, help);
  }

  function buildForm() {
    const kinds = [...new Set(files.map((f) => workflowOf(f.name)))];
    document.getElementById("workflow-name").textContent = kinds.length ? kinds.join(" + ") : "choose a file";
    const keep = {};
    fields.querySelectorAll("input, select").forEach((n) => { keep[n.name] = n.type === "checkbox" ? n.checked : n.value; });
    fields.replaceChildren();
    for (const name of INGEST_OPTIONS) {
      const users = kinds.filter((k) => workflows[k] && name in workflows[k].params_schema.properties);
      if (!users.length) continue;
      if (files.length > 1 && (name === "item_id" || name === "dataset_id")) continue;  // one id per file
      const prop = workflows[users[0]].params_schema.properties[name];
      const only = kinds.length > 1 && users.length === 1 ? users[0].replace("process_", "") : null;
      fields.append(control(name, prop, only));
    }
    fields.querySelectorAll("input, select").forEach((n) => {
      if (!(n.name in keep)) return;
      if (n.type === "checkbox") n.checked = keep[n.name]; else if ([...(n.options || [{ value: keep[n.name] }])].some((o) => o.value === keep[n.name])) n.value = keep[n.name];
    });
    submit.disabled = files.length === 0 || !Object.keys(workflows).length;
  }

  function listFiles() {
    chosen.replaceChildren(...files.map((f, i) => el("li", { "data-file": f.name },
      el("span", {}, el("strong", {}, f.name), ` ${size(f.size)} · ${workflowOf(f.name).replace("process_", "")}`),
      el("progress", { max: 100, value: 0, id: `progress-${i}`, "aria-label": `upload of ${f.name}` }),
      el("span", { class: "note", id: `note-${i}` }))));
    buildForm();
  }

  function choose(list) {
    files = [...list];
    listFiles();
  }
  input.addEventListener("change", () => choose(input.files));
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer && ev.dataTransfer.files.length) choose(ev.dataTransfer.files);
  });

  function query(file) {
    const wf = workflows[workflowOf(file.name)];
    const q = new URLSearchParams({ filename: file.name });
    fields.querySelectorAll("input, select").forEach((n) => {
      if (!wf || !(n.name in wf.params_schema.properties)) return;
      if (n.type === "checkbox") { if (n.checked) q.set(n.name, "true"); }
      else if (n.value.trim() !== "") q.set(n.name, n.value.trim());
    });
    return q;
  }

  // XMLHttpRequest, for upload progress (fetch has none for request bodies).
  function send(file, i) {
    return new Promise((resolve) => {
      const bar = document.getElementById(`progress-${i}`);
      const note = document.getElementById(`note-${i}`);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${root}/ingest?${query(file)}`);
      xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) bar.value = (100 * ev.loaded) / ev.total; };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 202) {
          bar.value = 100;
          note.replaceChildren("Submitted: ", el("a", { href: uiUrl(`/jobs/${body.job_id}`) }, `job ${body.job_id.slice(0, 12)}`),
            body.idempotent ? " (the same upload was already submitted)" : "");
          resolve(body.job_id);
        } else {
          const detail = body.detail || xhr.statusText;
          const errors = Array.isArray(body.errors) ? ": " + body.errors.map((e) => `${(e.loc || []).slice(-1)[0] || ""} ${e.msg || ""}`.trim()).join("; ") : "";
          note.textContent = `Refused (${xhr.status}): ${detail}${errors}`;
          note.classList.add("error");
          resolve(null);
        }
      };
      xhr.onerror = () => { note.textContent = "The upload failed (network error)."; note.classList.add("error"); resolve(null); };
      xhr.send(file);
    });
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errorBox.hidden = true;
    submit.disabled = true;
    const jobs = [];
    for (const [i, file] of files.entries()) jobs.push(await send(file, i));
    if (jobs.every(Boolean)) {
      location.assign(jobs.length === 1 ? uiUrl(`/jobs/${jobs[0]}`) : uiUrl("/jobs"));
    } else {
      errorBox.textContent = "Some files were refused; see the message next to each.";
      errorBox.hidden = false;
      submit.disabled = false;
    }
  });

  ready.then(async () => {
    try {
      for (const wf of await api("/workflows")) workflows[wf.name] = wf;
    } catch (e) {
      errorBox.textContent = `Could not read the workflows: ${e.message}`;
      errorBox.hidden = false;
    }
    buildForm();
    form.dataset.ready = "1";
  });
})();
