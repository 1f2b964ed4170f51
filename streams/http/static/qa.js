// callvault QA page: plain JS, no build step, no external resources.
//
// The bearer token stays in sessionStorage (this tab only) and is sent as
// "Authorization: Bearer" on API calls. The <audio> element cannot send headers,
// so playback goes through a playback grant: POST /v1/recordings/{id}/grants
// (decided and audited by the server) returns a short-lived signed URL bound to
// this user, recording, purpose and mode, which the player uses for its Range
// requests while seeking.
"use strict";

(function () {
  const TOKEN_KEY = "callvault.token";
  const DISCLOSURE_PURPOSES = ["legal-disclosure", "customer-disclosure"];
  const REASONS = {
    "justification-required": "State a justification (for example the evaluation id).",
    "purpose-not-tagged": "This recording was not collected for that purpose.",
    "role-not-allowed-purpose": "Your role may not use recordings for that purpose.",
    "recording-restricted": "The customer asked us to stop using this recording.",
    "recording-not-stored": "The recording has expired or was erased.",
    "contract-not-live": "Your organisation's entrustment contract is not live.",
    "rate-limited": "You have opened many recordings in the last hour; try again later.",
    "legal-basis-required": "A disclosure needs a legal basis.",
    "legal-basis-unknown": "That legal basis is not allowed.",
    "reference-required": "A disclosure needs a case or request reference.",
    "no-purpose": "Choose a purpose of use.",
    "capability-not-granted": "Your role may not do this.",
    "integrity-failure": "The stored recording failed its integrity check; it was not played.",
    "key-destroyed": "The recording was erased.",
    "token-expired": "Your token has expired; sign in again.",
    "token-signature": "The token is not valid.",
    "token-malformed": "That does not look like a callvault token.",
    "grant-expired": "The playback link expired; press Listen again.",
  };

  const $ = (id) => document.getElementById(id);
  let nextCursor = null;
  let current = null;

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function status(message) { $("status").textContent = message || ""; }

  function describe(body, httpStatus) {
    const reason = body && body.reason;
    const text = (reason && REASONS[reason]) || (body && body.detail) || ("HTTP " + httpStatus);
    return reason ? "Denied (" + reason + "): " + text : text;
  }

  async function api(path, options) {
    const init = Object.assign({ headers: {} }, options || {});
    init.headers = Object.assign({ Authorization: "Bearer " + token() }, init.headers);
    const response = await fetch(path, init);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) {
      signOut();
      throw new Error(describe(body, response.status));
    }
    if (!response.ok) { throw new Error(describe(body, response.status)); }
    return body;
  }

  function claims(value) {
    try {
      const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) { return null; }
  }

  function signedIn() {
    const info = claims(token() || "");
    $("signin").hidden = true;
    $("workspace").hidden = false;
    $("whoami").hidden = false;
    $("who-text").textContent = info ? (info.sub + " · " + info.role + (info.org ? " · " + info.org : "")) : "";
    search();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPlayer();
    $("workspace").hidden = true;
    $("whoami").hidden = true;
    $("signin").hidden = false;
    $("review").hidden = true;
    $("rows").textContent = "";
  }

  function minutes(ms) {
    const s = Math.round(ms / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function when(iso) { return new Date(iso).toLocaleString(); }

  function query() {
    const params = new URLSearchParams();
    const form = new FormData($("filters"));
    for (const [name, value] of form.entries()) {
      if (String(value).trim()) { params.set(name, String(value).trim()); }
    }
    return params;
  }

  async function search(more) {
    showError("");
    const params = query();
    if (more && nextCursor) { params.set("after", nextCursor); }
    if (!more) { $("rows").textContent = ""; }
    status("Loading recordings…");
    try {
      const page = await api("/v1/recordings?" + params.toString());
      for (const rec of page.recordings) { addRow(rec); }
      nextCursor = page.next;
      $("more").hidden = !nextCursor;
      $("empty").hidden = $("rows").children.length > 0;
      status($("rows").children.length + " recording(s) shown");
    } catch (err) {
      status("");
      showError(err.message);
    }
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function addRow(rec) {
    const tr = document.createElement("tr");
    tr.dataset.recordingId = rec.recording_id;
    cell(tr, when(rec.started_at));
    cell(tr, minutes(rec.duration_ms));
    cell(tr, rec.queue);
    cell(tr, rec.agent_id);
    cell(tr, rec.usable_purposes.join(", "));
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary review-button";
    button.textContent = "Review";
    button.setAttribute("aria-label", "Review recording " + rec.recording_id);
    button.addEventListener("click", () => select(rec, tr));
    td.appendChild(button);
    tr.appendChild(td);
    $("rows").appendChild(tr);
  }

  function select(rec, tr) {
    showError("");
    stopPlayer();
    for (const row of document.querySelectorAll("#rows tr")) { row.classList.remove("selected"); }
    tr.classList.add("selected");
    current = rec;
    $("review-id").textContent = rec.recording_id;
    const meta = $("review-meta");
    meta.textContent = "";
    const facts = [
      ["Started", when(rec.started_at)], ["Length", minutes(rec.duration_ms)],
      ["Queue", rec.queue], ["Agent", rec.agent_id], ["Direction", rec.direction],
      ["Collected for", rec.purposes.join(", ")], ["Kept until", when(rec.retain_until)],
    ];
    for (const [name, value] of facts) {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      meta.appendChild(dt); meta.appendChild(dd);
    }
    const purpose = $("purpose");
    purpose.textContent = "";
    for (const p of rec.usable_purposes) {
      const option = document.createElement("option");
      option.value = p; option.textContent = p;
      purpose.appendChild(option);
    }
    toggleDisclosure();
    $("review").hidden = false;
    $("justification").focus();
  }

  function toggleDisclosure() {
    $("disclosure-fields").hidden = !DISCLOSURE_PURPOSES.includes($("purpose").value);
  }

  function stopPlayer() {
    const player = $("player");
    player.pause();
    player.removeAttribute("src");
    player.load();
    player.hidden = true;
    $("grant-info").textContent = "";
  }

  async function requestGrant(mode) {
    showError("");
    if (!current) { return null; }
    const body = { purpose: $("purpose").value, mode: mode };
    const fields = { justification: "justification", legal_basis: "legal-basis", reference: "reference" };
    for (const [name, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (value) { body[name] = value; }
    }
    status(mode === "play" ? "Requesting playback…" : "Requesting download…");
    try {
      const grant = await api("/v1/recordings/" + encodeURIComponent(current.recording_id) + "/grants", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      status("");
      $("grant-info").textContent = "Access recorded in the audit log (#" + grant.grant_id +
        "); link valid until " + when(grant.expires_at) + ".";
      return grant;
    } catch (err) {
      status("");
      showError(err.message);
      return null;
    }
  }

  async function listen(event) {
    event.preventDefault();
    stopPlayer();
    const grant = await requestGrant("play");
    if (!grant) { return; }
    const player = $("player");
    player.hidden = false;
    player.src = grant.url;
    player.load();
    player.play().catch(() => { /* autoplay may be blocked; the controls are there */ });
  }

  async function download() {
    const grant = await requestGrant("download");
    if (!grant) { return; }
    const link = document.createElement("a");
    link.href = grant.url;
    link.rel = "noreferrer";
    link.download = current.recording_id + ".wav";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  function init() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) { return; }
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      signedIn();
    });
    $("sign-out").addEventListener("click", signOut);
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); search(false); });
    $("more").addEventListener("click", () => search(true));
    $("purpose").addEventListener("change", toggleDisclosure);
    $("access-form").addEventListener("submit", listen);
    $("download").addEventListener("click", download);
    $("player").addEventListener("error", () => {
      const code = $("player").error ? $("player").error.code : "?";
      showError("The audio could not be played (media error " + code + "). Press Listen to try again.");
    });
    if (token()) { signedIn(); }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
