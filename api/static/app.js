// image-pipeline web page: upload a CSV, then watch the request live. Plain DOM, no framework.
// Everything that comes from data (product names, URLs, errors) is set with textContent or as an
// attribute value, never parsed as HTML.
"use strict";

(function () {
  const KEY_STORAGE = "imgpipe.apiKey";
  const POLL_MS = 1000;
  // The final statuses come from the server (image_pipeline/domain/status.py), rendered into the page.
  const FINAL = (document.body.dataset.finalStatuses || "").split(",");
  const $ = (id) => document.getElementById(id);

  let current = null; // {id, timer, lastStamp, blobUrl}

  // The key in the box counts as soon as it is typed (saving only keeps it for the next visit).
  function apiKey() {
    const typed = $("api-key") ? $("api-key").value.trim() : "";
    return typed || localStorage.getItem(KEY_STORAGE) || "";
  }

  function say(text) {
    $("message").textContent = text;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }

  function httpUrl(u) {
    return typeof u === "string" && /^https?:\/\//i.test(u) ? u : null;
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({}, opts.headers || {}, { Authorization: "Bearer " + apiKey() });
    const res = await fetch(path, Object.assign({}, opts, { headers: headers }));
    let body = null;
    const type = res.headers.get("content-type") || "";
    if (type.includes("application/json")) body = await res.json();
    return { res: res, body: body };
  }

  function problemText(body, res) {
    if (res.status === 401) return "The API key was not accepted: enter a valid key above.";
    return (body && body.detail) || "HTTP " + res.status;
  }

  // ---- key -------------------------------------------------------------------------------
  function initKey() {
    $("api-key").value = apiKey();
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("api-key").value.trim();
      if (!value) return;
      localStorage.setItem(KEY_STORAGE, value);
      say("Key saved in this browser.");
      loadRecent();
      loadProfiles();
    });
    // A typed key is used at once: refresh what depends on it when the box is left.
    $("api-key").addEventListener("change", () => {
      loadRecent();
      loadProfiles();
    });
    $("forget-key").addEventListener("click", () => {
      localStorage.removeItem(KEY_STORAGE);
      $("api-key").value = "";
      $("recent-body").replaceChildren();
      $("recent-empty").hidden = false;
      say("Key removed from this browser.");
    });
  }

  // ---- upload ----------------------------------------------------------------------------
  let dropped = null;

  function chosenFile() {
    return dropped || ($("csv-file").files && $("csv-file").files[0]) || null;
  }

  function showChosen() {
    const f = chosenFile();
    $("drop-label").textContent = f ? "Chosen: " + f.name + " (" + fmtBytes(f.size) + ")" :
      "Drop a CSV file here";
  }

  function initUpload() {
    const zone = $("drop-zone");
    $("choose-file").addEventListener("click", () => $("csv-file").click());
    zone.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault();
      zone.classList.remove("over");
      if (ev.dataTransfer && ev.dataTransfer.files.length) {
        dropped = ev.dataTransfer.files[0];
        showChosen();
      }
    });
    $("csv-file").addEventListener("change", () => {
      dropped = null;
      showChosen();
    });
    $("upload-form").addEventListener("submit", submit);
  }

  function showProblems(body, res) {
    const box = $("upload-problems");
    const tbody = $("problems-body");
    tbody.replaceChildren();
    $("problems-detail").textContent = problemText(body, res);
    const errors = (body && body.errors) || [];
    for (const e of errors) {
      const tr = el("tr");
      tr.append(el("td", e.row ? e.row : "file"), el("td", e.column || ""), el("td", e.message));
      tbody.append(tr);
    }
    box.hidden = false;
  }

  async function submit(ev) {
    ev.preventDefault();
    $("upload-problems").hidden = true;
    if (!apiKey()) {
      say("Enter an API key first.");
      $("api-key").focus();
      return;
    }
    const file = chosenFile();
    if (!file) {
      say("Choose a CSV file first.");
      $("choose-file").focus();
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    const hook = $("webhook-url").value.trim();
    if (hook) form.append("webhook_url", hook);
    if ($("profile").value) form.append("profile", $("profile").value);
    const options = $("options").value.trim();
    if (options) form.append("options", options);
    $("submit").disabled = true;
    say("Uploading " + file.name + "…");
    try {
      const { res, body } = await api("/api/upload", { method: "POST", body: form });
      if (res.status === 202 && body) {
        say(body.message.charAt(0).toUpperCase() + body.message.slice(1) + ".");
        openRequest(body.request_id);
        loadRecent();
      } else {
        say("Upload refused.");
        showProblems(body, res);
      }
    } catch (err) {
      say("Upload failed: " + err);
    } finally {
      $("submit").disabled = false;
    }
  }

  // ---- live view -------------------------------------------------------------------------
  function openRequest(id) {
    if (current && current.timer) clearTimeout(current.timer);
    if (current && current.blobUrl) URL.revokeObjectURL(current.blobUrl);
    current = { id: id, timer: null, lastStamp: null, blobUrl: null };
    history.replaceState(null, "", "#request=" + encodeURIComponent(id));
    $("live").hidden = false;
    $("live-id").textContent = id;
    $("download").hidden = true;
    $("cancel-request").hidden = true;
    $("cancel-message").textContent = "";
    $("products-body").replaceChildren();
    poll(current);
  }

  async function poll(state) {
    if (current !== state) return;
    let final = false;
    try {
      const { res, body } = await api("/api/status/" + encodeURIComponent(state.id));
      if (current !== state) return;
      if (res.status !== 200) {
        $("live-status").textContent = "unavailable";
        $("live-error").textContent = problemText(body, res);
        return;
      }
      renderStatus(body);
      final = FINAL.includes(body.status);
      const stamp = body.status + ":" + body.progress.done + ":" + body.progress.failed;
      if (stamp !== state.lastStamp) {
        state.lastStamp = stamp;
        await loadResults(state);
        if (final) {
          await prepareDownload(state, body);
          loadRecent();
        }
      }
    } catch (err) {
      $("live-error").textContent = "Lost contact with the API (" + err + "); retrying.";
    }
    if (!final && current === state) state.timer = setTimeout(() => poll(state), POLL_MS);
  }

  function renderStatus(doc) {
    const p = doc.progress;
    const finished = p.done + p.failed;
    const pct = p.total ? Math.floor((finished * 100) / p.total) : FINAL.includes(doc.status) ? 100 : 0;
    $("live-status").textContent = doc.status.replace("_", " ");
    $("live-status").dataset.status = doc.status;
    // Only a request that has not finished can be stopped (the API answers 409 otherwise).
    $("cancel-request").hidden = FINAL.includes(doc.status);
    $("live-error").textContent = doc.error || "";
    $("live-progress").max = Math.max(p.total, 1);
    $("live-progress").value = finished;
    $("live-progress").setAttribute("aria-valuetext", pct + " %");
    $("live-progress-text").textContent =
      pct + " % — " + p.done + " done, " + p.failed + " failed, of " + p.total + " images";
  }

  async function cancelRequest() {
    const state = current;
    if (!state) return;
    $("cancel-request").disabled = true;
    $("cancel-message").textContent = "Canceling…";
    try {
      const { res, body } = await api("/api/requests/" + encodeURIComponent(state.id) + "/cancel", { method: "POST" });
      if (current !== state) return;
      if (res.status === 200 && body) {
        $("cancel-message").textContent = "Canceled: images already done stay stored.";
        renderStatus(body);
        if (state.timer) clearTimeout(state.timer);
        poll(state);
      } else {
        $("cancel-message").textContent = problemText(body, res);
      }
    } catch (err) {
      $("cancel-message").textContent = "Could not reach the API (" + err + ").";
    } finally {
      $("cancel-request").disabled = false;
    }
  }

  function thumb(url, alt) {
    const safe = httpUrl(url);
    if (!safe) return el("span", "—", "muted");
    const a = el("a");
    a.href = safe;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    const img = el("img");
    img.src = safe;
    img.alt = alt;
    img.loading = "lazy";
    img.className = "thumb";
    a.append(img);
    return a;
  }

  function resultCell(image) {
    const td = el("td");
    if (image.status === "done") {
      const saved = image.bytes_in - image.bytes_out;
      const pct = image.bytes_in ? Math.round((saved * 100) / image.bytes_in) : 0;
      td.append(el("span", "done", "ok"));
      td.append(el("div", fmtBytes(image.bytes_in) + " → " + fmtBytes(image.bytes_out)));
      td.append(el("div", image.kept_original ? "original kept (already smaller)" :
        "saved " + fmtBytes(saved) + " (" + pct + " %)"));
    } else if (image.status === "failed") {
      td.append(el("span", "failed", "bad"));
      td.append(el("div", image.error || "failed"));
      if (image.failure_class) td.append(el("div", image.failure_class.replace("_", " "), "muted"));
    } else {
      td.append(el("span", "pending", "muted"));
    }
    return td;
  }

  function renditionList(renditions) {
    const list = el("ul", null, "renditions");
    for (const r of renditions) {
      const li = el("li");
      const safe = httpUrl(r.url);
      const label = r.name + ": " + r.format + " " + r.width + "×" + r.height + ", " + fmtBytes(r.bytes);
      if (safe) {
        const a = el("a", label);
        a.href = safe;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        li.append(a);
      } else {
        li.textContent = label;
      }
      list.append(li);
    }
    return list;
  }

  // ---- profiles ----------------------------------------------------------------------------
  async function loadProfiles() {
    if (!apiKey()) return;
    const select = $("profile");
    const chosen = select.value;
    const { res, body } = await api("/api/profiles");
    if (res.status !== 200 || !body) return;
    const options = [select.options[0]];
    for (const p of body.profiles) {
      if (p.name === "default") continue;
      const what = p.renditions.map((r) => r.name + " " + r.format + (r.width ? " " + r.width : "")).join(", ");
      const opt = el("option", p.name + (p.source === "tenant" ? " (yours)" : "") + " — " + what);
      opt.value = p.name;
      options.push(opt);
    }
    select.replaceChildren(...options);
    select.value = chosen;
  }

  async function loadResults(state) {
    const { res, body } = await api("/api/requests/" + encodeURIComponent(state.id) + "/results?limit=200");
    if (current !== state || res.status !== 200) return;
    const saved = body.bytes_in - body.bytes_out;
    $("live-bytes").textContent = body.bytes_in ?
      "Bytes: " + fmtBytes(body.bytes_in) + " in, " + fmtBytes(body.bytes_out) + " out — saved " + fmtBytes(saved) +
      " (" + Math.round((saved * 100) / body.bytes_in) + " %)" : "";
    const more = $("live-more");
    more.hidden = body.total_products <= body.products.length;
    more.textContent = "Showing the first " + body.products.length + " of " + body.total_products +
      " products; the output CSV has them all.";
    const rows = [];
    for (const product of body.products) {
      product.images.forEach((image, i) => {
        const tr = el("tr");
        tr.dataset.status = image.status;
        if (i === 0) {
          for (const value of [product.row, product.serial, product.name]) {
            const td = el("td", value);
            td.rowSpan = product.images.length;
            tr.append(td);
          }
        }
        const before = el("td");
        before.append(thumb(image.url, "input image " + (i + 1) + " of " + product.name));
        const after = el("td");
        after.append(thumb(image.output_url, "recompressed image " + (i + 1) + " of " + product.name));
        if (image.renditions) after.append(renditionList(image.renditions));
        tr.append(before, after, resultCell(image));
        rows.push(tr);
      });
    }
    $("products-body").replaceChildren(...rows);
  }

  async function prepareDownload(state, doc) {
    const link = $("download");
    if (!doc.output_csv_url) return;
    // The browser cannot add the bearer header to a plain link: fetch the CSV, hand out a blob link.
    const res = await fetch("/api/requests/" + encodeURIComponent(state.id) + "/output.csv", {
      headers: { Authorization: "Bearer " + apiKey() },
    });
    if (current !== state || !res.ok) return;
    const blob = await res.blob();
    state.blobUrl = URL.createObjectURL(blob);
    link.href = state.blobUrl;
    link.download = state.id + "-output.csv";
    link.textContent = "Download output CSV (" + fmtBytes(blob.size) + ")";
    link.hidden = false;
  }

  // ---- recent requests -------------------------------------------------------------------
  async function loadRecent() {
    if (!apiKey()) return;
    const { res, body } = await api("/api/requests?limit=20");
    const tbody = $("recent-body");
    if (res.status !== 200) {
      tbody.replaceChildren();
      $("recent-empty").hidden = false;
      $("recent-empty").textContent = problemText(body, res);
      return;
    }
    const rows = body.requests.map((r) => {
      const tr = el("tr");
      const p = r.progress;
      const open = el("button", "Open");
      open.type = "button";
      open.setAttribute("aria-label", "Open request " + r.request_id);
      open.addEventListener("click", () => openRequest(r.request_id));
      const cell = el("td");
      cell.append(open);
      tr.append(
        el("td", new Date(r.created_at).toLocaleString()),
        el("td", r.filename || r.request_id),
        el("td", r.status.replace("_", " ")),
        el("td", p.done + p.failed + " / " + p.total + (p.failed ? " (" + p.failed + " failed)" : "")),
        cell,
      );
      return tr;
    });
    tbody.replaceChildren(...rows);
    $("recent-empty").hidden = rows.length > 0;
    $("recent-empty").textContent = "No requests yet.";
  }

  document.addEventListener("DOMContentLoaded", () => {
    initKey();
    initUpload();
    $("refresh-recent").addEventListener("click", loadRecent);
    $("cancel-request").addEventListener("click", cancelRequest);
    loadRecent();
    loadProfiles();
    const m = /^#request=([0-9a-f-]{36})$/.exec(location.hash);
    if (m && apiKey()) openRequest(m[1]);
  });
})();
