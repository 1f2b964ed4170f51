// callvault privacy office page: plain JS, no build step, no external resources.
//
// Signed in with a compliance officer's bearer token (sessionStorage, this tab; the
// same key as the QA page). Lists the tenant's privacy requests (overdue first), shows
// one request's timeline and result, and takes the workflow's steps through the API:
// POST /v1/privacy-requests (file), .../{id}/verify, .../{id}/approve, .../{id}/refuse;
// downloads a disclosure's export from GET /v1/privacy-requests/{id}/export (a fetch
// with the token, saved from a blob: URL); lists the active legal holds with their scope.
"use strict";

(function () {
  const { TOKEN_KEY, $, token, status, showError, cell } = window.callvault;
  const REASONS = {
    "wrong-status": "That step is not possible in the request's current status.",
    "tenant-mismatch": "Your token is for another tenant.",
    "capability-not-granted": "Your role may not handle privacy requests.",
    "personal-data": "Leave personal data (e-mail addresses, phone numbers) out of the note.",
    "bad-field": "A field is missing or not valid.",
    "missing-field": "A field is missing.",
    "token-expired": "Your session has expired; sign in again.",
    "token-signature": "The token is not valid.",
    "token-malformed": "That does not look like a callvault token.",
  };
  const describe = window.callvault.describer(REASONS, "Refused", true);
  const api = window.callvault.client(describe, () => signOut());
  const PAGE = 500; // requests per page of the list
  const MAX_PAGES = 4; // pages the office loads before saying more exist
  let selected = null;

  function when(iso) { return iso ? iso.slice(0, 16).replace("T", " ") : "—"; }
  function slaText(request) {
    const days = request.days_left;
    if (request.overdue) { return "overdue by " + Math.max(0, -days) + " d (" + request.sla_days + " d SLA)"; }
    if (!["received", "verified", "approved", "executing", "failed"].includes(request.status)) {
      return request.sla_days + " d SLA";
    }
    return days + " d left of " + request.sla_days;
  }

  // ---------------------------------------------------------------- sign-in
  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    $("office").hidden = true;
    $("whoami").hidden = true;
    $("signin").hidden = false;
  }
  async function start() {
    try {
      const me = await api("/v1/auth/me");
      if (!me.capabilities.includes("privacy-requests")) {
        showError("error", "Refused (capability-not-granted): " + REASONS["capability-not-granted"]);
        return;
      }
      $("who-text").textContent = me.user + " · " + me.role + (me.tenant ? " · " + me.tenant : "");
      $("whoami").hidden = false;
      $("signin").hidden = true;
      $("office").hidden = false;
      showError("error", "");
      await Promise.all([loadRequests(), loadHolds()]);
    } catch (e) {
      showError("error", e.message);
    }
  }

  // ---------------------------------------------------------------- requests
  async function loadRequests() {
    const wanted = $("f-status").value;
    // pages of the list (open first, overdue leading), followed by "next" up to
    // MAX_PAGES; past them the status line says more exist, never cut silently
    const base = "/v1/privacy-requests?limit=" + PAGE + (wanted ? "&status=" + encodeURIComponent(wanted) : "");
    const body = { requests: [], next: null };
    let page = await api(base);
    body.requests.push(...page.requests);
    for (let pages = 1; page.next && pages < MAX_PAGES; pages++) {
      page = await api(base + "&after=" + encodeURIComponent(page.next));
      body.requests.push(...page.requests);
    }
    body.next = page.next;
    const rows = $("requests");
    rows.textContent = "";
    for (const request of body.requests) {
      const row = document.createElement("tr");
      row.dataset.requestId = request.request_id;
      row.dataset.status = request.status;
      if (request.overdue) { row.classList.add("overdue"); }
      if (selected && selected === request.request_id) { row.classList.add("selected"); }
      const idCell = cell(row, "Request", "", null);
      const open = document.createElement("button");
      open.type = "button";
      open.className = "link open-request";
      open.textContent = request.request_id;
      open.addEventListener("click", () => showRequest(request.request_id));
      idCell.appendChild(open);
      cell(row, "Type", request.type, null);
      cell(row, "Status", request.status + (request.overdue ? " · OVERDUE" : ""), "state");
      cell(row, "Received", when(request.received_at), null);
      cell(row, "Due", when(request.due_at), null);
      cell(row, "SLA", slaText(request), "sla");
      rows.appendChild(row);
    }
    $("requests-empty").hidden = body.requests.length > 0;
    status(body.requests.length + " request(s)" + (body.next ? "; more not shown: filter by status" : ""));
  }

  function render(request) {
    selected = request.request_id;
    $("detail").hidden = false;
    $("d-id").textContent = request.request_id;
    $("d-type").textContent = request.type;
    $("d-tenant").textContent = request.tenant;
    $("d-status").textContent = request.status + (request.overdue ? " · OVERDUE" : "");
    $("d-due").textContent = when(request.due_at) + " (" + slaText(request) + ")";
    $("d-subject").textContent = request.subject_ref.slice(0, 16) + "… (pseudonym)";
    const result = request.result || {};
    const decision = request.decision;
    let summary = result.summary || "";
    if (decision && decision.outcome === "refused") {
      summary = "Refused: " + decision.reason + " — " + decision.note;
    } else if (!summary && request.progress && Object.keys(request.progress).length) {
      summary = Object.entries(request.progress).map(([k, v]) => k + " " + v).join(", ");
    }
    $("d-result").textContent = summary || "—";
    const steps = $("d-timeline");
    steps.textContent = "";
    for (const step of request.timeline) {
      const item = document.createElement("li");
      item.dataset.step = step.step;
      item.textContent = step.step + " · " + when(step.at) + (step.by ? " · by " + step.by : "");
      steps.appendChild(item);
    }
    const withheld = $("d-withheld");
    withheld.textContent = "";
    for (const item of result.withheld || []) {
      const li = document.createElement("li");
      li.textContent = "Not exported " + item.recording_id + ": " + item.reason + (item.note ? " (" + item.note + ")" : "");
      withheld.appendChild(li);
    }
    $("verify-block").hidden = request.status !== "received";
    $("decide-block").hidden = !["received", "verified"].includes(request.status);
    $("approve").disabled = request.status !== "verified";
    $("export-block").hidden = !(request.type === "disclose" && request.status === "completed");
    $("download").dataset.href = "/v1/privacy-requests/" + encodeURIComponent(request.request_id) + "/export";
    showError("detail-error", "");
    for (const row of $("requests").querySelectorAll("tr")) {
      row.classList.toggle("selected", row.dataset.requestId === selected);
    }
  }

  async function showRequest(id) {
    try {
      render(await api("/v1/privacy-requests/" + encodeURIComponent(id)));
    } catch (e) {
      showError("error", e.message);
    }
  }

  async function step(path, json, done) {
    showError("detail-error", "");
    try {
      const request = await api("/v1/privacy-requests/" + encodeURIComponent(selected) + "/" + path,
        { method: "POST", json: json });
      render(request);
      status(done);
      await Promise.all([loadRequests(), loadHolds()]);
    } catch (e) {
      showError("detail-error", e.message);
    }
  }

  async function download() {
    showError("detail-error", "");
    const href = $("download").dataset.href;
    try {
      const response = await fetch(href, { headers: { Authorization: "Bearer " + token() } });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch (e) { body = null; }
        throw new Error(describe(body, response.status));
      }
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement("a");
      link.href = url;
      link.download = selected + ".zip";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      status("Export downloaded (the download is audited).");
    } catch (e) {
      showError("detail-error", e.message);
    }
  }

  async function submit(event) {
    event.preventDefault();
    showError("submit-error", "");
    const body = { type: $("s-type").value, customer_ref: $("s-customer").value };
    if ($("s-id").value.trim()) { body.request_id = $("s-id").value.trim(); }
    try {
      const request = await api("/v1/privacy-requests", { method: "POST", json: body });
      $("s-customer").value = "";
      $("s-id").value = "";
      status("Filed " + request.request_id + ": verify the customer's identity next.");
      await loadRequests();
      render(request);
    } catch (e) {
      showError("submit-error", e.message);
    }
  }

  // ---------------------------------------------------------------- holds
  async function loadHolds() {
    const body = await api("/v1/holds");
    const rows = $("holds");
    rows.textContent = "";
    for (const hold of body.holds) {
      const row = document.createElement("tr");
      row.dataset.holdId = hold.hold_id;
      cell(row, "Hold", hold.hold_id, "mono");
      cell(row, "Scope", hold.scope === "subject" ? "customer" : hold.scope, "scope");
      cell(row, "Target", hold.scope === "subject" ? hold.target.slice(0, 16) + "… (pseudonym)" : hold.target, "mono");
      cell(row, "Reason", hold.reason, null);
      cell(row, "Reference", hold.reference, null);
      cell(row, "Placed", when(hold.placed_at) + " · " + hold.placed_by, null);
      rows.appendChild(row);
    }
    $("holds-empty").hidden = body.holds.length > 0;
  }

  // ---------------------------------------------------------------- wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      start();
    });
    $("sign-out").addEventListener("click", signOut);
    $("refresh").addEventListener("click", () => loadRequests().catch((e) => showError("error", e.message)));
    $("f-status").addEventListener("change", () => loadRequests().catch((e) => showError("error", e.message)));
    $("verify").addEventListener("click", () => step("verify", { method: $("v-method").value },
      "Identity verified: approve or refuse."));
    $("approve").addEventListener("click", () => step("approve", {}, "Approved and carried out."));
    $("refuse").addEventListener("click", () => step("refuse",
      { reason: $("r-reason").value, note: $("r-note").value }, "Refused."));
    $("download").addEventListener("click", download);
    $("submit-form").addEventListener("submit", submit);
    if (token()) { start(); }
  });
})();
