// callvault QA page: plain JS, no build step, no external resources.
//
// Sign-in: "Sign in with SSO" runs the OpenID Connect authorization code flow with
// PKCE (S256, WebCrypto) against the identity provider named by GET /v1/auth/config;
// the state and code verifier wait in sessionStorage, the IdP sends the browser back
// to /oidc/callback, the page exchanges the code at the token endpoint (fetch, CORS)
// and removes the code from the address bar (history.replaceState). A local cv1
// token can be pasted instead. The bearer token stays in sessionStorage (this tab).
//
// Audio: the <audio> element cannot send headers, so playback goes through a
// playback grant (POST /v1/recordings/{id}/grants: decided and audited once) whose
// signed URL serves the Range requests and the waveform of the session. The player
// splits the channels with WebAudio (one lane each, solo/mute per lane), draws each
// lane's waveform, marks the silenced PCI intervals (metadata `pci_pauses`, when the
// catalog has them) and the reviewer's timeline notes.
"use strict";

(function () {
  const { TOKEN_KEY, $, token, status, showError, el, cell, ApiError } = window.callvault;
  const PKCE_KEY = "callvault.pkce";
  const DISCLOSURE_PURPOSES = ["legal-disclosure", "customer-disclosure"];
  const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];
  const REASONS = {
    "justification-required": "State a justification (for example the evaluation id).",
    "justification-personal-data":
      "A justification must not hold a phone, card number or e-mail address: give a ticket, case or evaluation id.",
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
    "assignment-required": "Your role reviews only recordings assigned to you.",
    "assignment-unknown": "There is no such evaluation assignment.",
    "assignment-not-yours": "That evaluation assignment is someone else's.",
    "assignment-other-recording": "That evaluation assignment is for another recording.",
    "assignment-closed": "The evaluation assignment is completed or cancelled.",
    "integrity-failure": "The stored recording failed its integrity check; it was not played.",
    "key-destroyed": "The recording was erased.",
    "token-expired": "Your session has expired; sign in again.",
    "token-signature": "The token is not valid.",
    "token-malformed": "That does not look like a callvault token.",
    "idp-unavailable": "The identity provider cannot be reached; try again in a moment.",
    "grant-expired": "The playback link expired; press Listen again.",
    "unknown-parameter": "That search filter is not known.",
    "stale": "Someone saved this evaluation in the meantime; reload it.",
  };

  const describe = window.callvault.describer(REASONS, "Denied", false);
  const api = window.callvault.client(describe, () => signOut());
  let authConfig = null;
  let me = null;
  let nextCursor = null;
  let current = null;       // the recording under review
  let assignment = null;    // the assignment it is reviewed under (or null)
  let evaluation = null;    // that assignment's evaluation view
  let waveform = null;

  // ---------------------------------------------------------------- helpers
  function minutes(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function clockText(seconds) {
    const s = Math.max(0, seconds || 0);
    const whole = Math.floor(s);
    return Math.floor(whole / 60) + ":" + String(whole % 60).padStart(2, "0") +
      (s < 60 && s % 1 >= 0.05 ? "." + Math.floor((s % 1) * 10) : "");
  }

  function when(iso) { return new Date(iso).toLocaleString(); }
  function secondsText(ms) { return (ms / 1000).toFixed(ms % 1000 ? 1 : 0) + " s"; }

  function laneName(rec, index) {
    const roles = rec && Array.isArray(rec.channel_roles) ? rec.channel_roles : null;
    if (roles && roles[index]) { return roles[index].charAt(0).toUpperCase() + roles[index].slice(1); }
    return rec && rec.channels > 1 ? "Channel " + (index + 1) : "Call";
  }

  // ---------------------------------------------------------------- sign-in
  function b64url(bytes) {
    let text = "";
    for (const b of new Uint8Array(bytes)) { text += String.fromCharCode(b); }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function randomText(n) { return b64url(crypto.getRandomValues(new Uint8Array(n))); }

  async function startSso() {
    showError("signin-error", "");
    const sso = authConfig && authConfig.sso;
    if (!sso) { showError("signin-error", "Single sign-on is not configured."); return; }
    const verifier = randomText(48);
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = randomText(16);
    const redirectUri = location.origin + authConfig.callback_path;
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, redirectUri }));
    const url = new URL(sso.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: "code", client_id: sso.client_id, redirect_uri: redirectUri,
      scope: sso.scope, resource: sso.audience, code_challenge: challenge,
      code_challenge_method: "S256", state,
    }).toString();
    location.assign(url.href);
  }

  async function finishSso() {
    const params = new URLSearchParams(location.search);
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    sessionStorage.removeItem(PKCE_KEY);
    history.replaceState(null, "", "/");  // the code never stays in the address bar or history
    const sso = authConfig && authConfig.sso;
    if (params.get("error")) {
      throw new Error("The identity provider refused the sign-in: " + params.get("error") +
        (params.get("error_description") ? " (" + params.get("error_description") + ")" : ""));
    }
    if (!saved || params.get("state") !== saved.state) { throw new Error("The sign-in answer does not match this tab (state); sign in again."); }
    if (!sso) { throw new Error("Single sign-on is not configured."); }
    if (params.get("iss") && params.get("iss") !== sso.issuer) { throw new Error("The sign-in answer came from another identity provider."); }
    const response = await fetch(sso.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: params.get("code") || "",
        redirect_uri: saved.redirectUri, client_id: sso.client_id, code_verifier: saved.verifier,
      }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok || !answer.access_token) {
      throw new Error("The identity provider did not issue a token: " + (answer.error || response.status));
    }
    sessionStorage.setItem(TOKEN_KEY, answer.access_token);
  }

  async function signedIn() {
    showError("error", "");
    try {
      me = await api("/v1/auth/me");
    } catch (err) {
      if (!token()) { return; }
      showError("error", err.message);
      return;
    }
    $("signin").hidden = true;
    $("workspace").hidden = false;
    $("whoami").hidden = false;
    $("who-text").textContent = me.user + " · " + me.role + (me.org ? " · " + me.org : "") + (me.tenant ? " · " + me.tenant : "");
    const caps = new Set(me.capabilities);
    $("tab-assignments").hidden = !caps.has("evaluate");
    $("tab-search").hidden = !caps.has("list-recordings");
    $("tab-scores").hidden = !caps.has("manage-evaluations");
    const first = ["tab-assignments", "tab-search", "tab-scores"].find((id) => !$(id).hidden);
    if (first) { openTab(first); } else {
      showError("error", me.blocked ? describe({ reason: me.blocked }, 403) : "Your role has nothing to do on this page.");
    }
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    stopPlayer();
    me = null;
    $("workspace").hidden = true;
    $("whoami").hidden = true;
    $("signin").hidden = false;
    $("review").hidden = true;
    $("evaluation").hidden = true;
    $("rows").textContent = "";
    $("assignment-rows").textContent = "";
  }

  // ---------------------------------------------------------------- tabs
  const PANELS = { "tab-assignments": "assignments-panel", "tab-search": "search-panel", "tab-scores": "scores-panel" };
  function openTab(id) {
    for (const [tab, panel] of Object.entries(PANELS)) {
      $(tab).setAttribute("aria-selected", String(tab === id));
      $(panel).hidden = tab !== id;
    }
    if (id === "tab-assignments") { loadAssignments(); }
    if (id === "tab-search" && !$("rows").children.length) { search(false); }
    if (id === "tab-scores") { loadPlans(); loadScores(); }
  }

  // ---------------------------------------------------------------- find the call
  function query() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData($("filters")).entries()) {
      if (String(value).trim()) { params.set(name, String(value).trim()); }
    }
    return params;
  }

  async function search(more) {
    showError("search-error", "");
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
      status($("rows").children.length + " recording(s) shown, newest first");
    } catch (err) {
      status("");
      showError("search-error", err.message);
    }
  }

  function addRow(rec) {
    const tr = el("tr");
    tr.dataset.recordingId = rec.recording_id;
    cell(tr, "Recording", rec.recording_id, "mono");
    cell(tr, "Call", rec.call_id, "mono");
    cell(tr, "Agent", rec.agent_id);
    cell(tr, "Queue", rec.queue);
    cell(tr, "Direction", rec.direction);
    cell(tr, "Started", when(rec.started_at));
    cell(tr, "Length", minutes(rec.duration_ms));
    cell(tr, "Channels", String(rec.channels));
    cell(tr, "PCI silenced", rec.pci_silenced ? "yes (" + secondsText(rec.pci_redacted_ms) + ")" : "no");
    const td = el("td", { "data-label": "" });
    const button = el("button", { type: "button", className: "secondary review-button" }, "Review");
    button.setAttribute("aria-label", "Review recording " + rec.recording_id);
    button.addEventListener("click", () => select(rec, null, tr));
    td.appendChild(button);
    tr.appendChild(td);
    $("rows").appendChild(tr);
  }

  // ---------------------------------------------------------------- assignments
  async function loadAssignments() {
    showError("assignments-error", "");
    const state = $("a-status").value;
    try {
      const page = await api("/v1/assignments" + (state ? "?status=" + state : ""));
      const body = $("assignment-rows");
      body.textContent = "";
      for (const item of page.assignments) {
        const tr = el("tr");
        tr.dataset.assignmentId = item.assignment_id;
        const rec = item.recording;
        cell(tr, "Assignment", item.assignment_id, "mono");
        cell(tr, "Recording", item.recording_id, "mono");
        cell(tr, "Agent", rec ? rec.agent_id : "—");
        cell(tr, "Queue", rec ? rec.queue : "—");
        cell(tr, "Due", new Date(item.due_at).toLocaleDateString() + (item.overdue ? " (overdue)" : ""));
        cell(tr, "Status", item.status);
        const td = el("td", { "data-label": "" });
        const button = el("button", { type: "button", className: "secondary open-assignment" }, item.status === "open" ? "Evaluate" : "View");
        button.setAttribute("aria-label", "Open assignment " + item.assignment_id);
        button.addEventListener("click", () => openAssignment(item.assignment_id, tr));
        td.appendChild(button);
        tr.appendChild(td);
        body.appendChild(tr);
      }
      $("assignments-empty").hidden = page.assignments.length > 0;
    } catch (err) {
      showError("assignments-error", err.message);
    }
  }

  async function openAssignment(id, tr) {
    showError("assignments-error", "");
    try {
      const view = await api("/v1/assignments/" + encodeURIComponent(id));
      if (!view.recording) {
        showError("assignments-error", "The recording of " + id + " can no longer be reviewed.");
        return;
      }
      select(view.recording, view, tr);
    } catch (err) {
      showError("assignments-error", err.message);
    }
  }

  // ---------------------------------------------------------------- review panel
  function select(rec, view, tr) {
    showError("access-error", "");
    stopPlayer();
    for (const row of document.querySelectorAll("tr.selected")) { row.classList.remove("selected"); }
    if (tr) { tr.classList.add("selected"); }
    current = rec;
    evaluation = view;
    assignment = view ? view.assignment : null;
    $("review-id").textContent = rec.recording_id;
    const meta = $("review-meta");
    meta.textContent = "";
    const facts = [
      ["Call", rec.call_id], ["Started", when(rec.started_at)], ["Length", minutes(rec.duration_ms)],
      ["Queue", rec.queue], ["Agent", rec.agent_id], ["Direction", rec.direction],
      ["Channels", String(rec.channels) + (Array.isArray(rec.channel_roles) ? " (" + rec.channel_roles.join(", ") + ")" : "")],
      ["PCI silenced", rec.pci_silenced ? secondsText(rec.pci_redacted_ms) : "no"],
      ["Collected for", rec.purposes.join(", ")], ["Kept until", when(rec.retain_until)],
    ];
    for (const [name, value] of facts) {
      meta.appendChild(el("dt", {}, name));
      meta.appendChild(el("dd", {}, value));
    }
    const purpose = $("purpose");
    purpose.textContent = "";
    const purposes = assignment ? [assignment.purpose] : rec.usable_purposes;
    for (const p of purposes) { purpose.appendChild(el("option", { value: p }, p)); }
    const justification = $("justification");
    justification.value = assignment ? assignment.assignment_id : "";
    justification.readOnly = Boolean(assignment);
    $("justification-hint").textContent = assignment
      ? "(the evaluation assignment is the justification)"
      : "(evaluation or ticket id; required for quality review)";
    toggleDisclosure();
    $("review").hidden = false;
    renderEvaluation();
    $("review").scrollIntoView({ block: "start" });
    (assignment ? $("listen") : justification).focus();
  }

  function toggleDisclosure() {
    $("disclosure-fields").hidden = !DISCLOSURE_PURPOSES.includes($("purpose").value);
  }

  async function requestGrant(mode) {
    showError("access-error", "");
    if (!current) { return null; }
    const body = { purpose: $("purpose").value, mode: mode };
    if (assignment) {
      body.assignment = assignment.assignment_id;
    } else {
      const fields = { justification: "justification", legal_basis: "legal-basis", reference: "reference" };
      for (const [name, id] of Object.entries(fields)) {
        const value = $(id).value.trim();
        if (value) { body[name] = value; }
      }
    }
    status(mode === "play" ? "Requesting playback…" : "Requesting download…");
    try {
      const grant = await api("/v1/recordings/" + encodeURIComponent(current.recording_id) + "/grants", {
        method: "POST", json: body,
      });
      status("");
      $("grant-info").textContent = "Access recorded in the audit log (#" + grant.grant_id +
        "); link valid until " + when(grant.expires_at) + ".";
      return grant;
    } catch (err) {
      status("");
      showError("access-error", err.message);
      return null;
    }
  }

  async function listen(event) {
    event.preventDefault();
    stopPlayer();
    const grant = await requestGrant("play");
    if (!grant) { return; }
    Player.start(current, grant.url);
  }

  async function download() {
    const grant = await requestGrant("download");
    if (!grant) { return; }
    const link = el("a", { href: grant.url, rel: "noreferrer" });
    link.download = current.recording_id + ".wav";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  function stopPlayer() { Player.stop(); $("grant-info").textContent = ""; }

  // ---------------------------------------------------------------- the player
  const Player = (function () {
    const audio = () => $("player");
    let context = null, source = null, splitter = null, merger = null, gains = [], meters = [];
    let lanes = [];      // [{solo, mute, canvas, element}]
    let rec = null;
    let frame = 0;

    function routing(channels) {
      if (!window.AudioContext) { return; }
      if (!context) {
        context = new AudioContext();
        source = context.createMediaElementSource(audio());
      }
      source.disconnect();
      if (splitter) { splitter.disconnect(); }
      for (const g of gains) { g.disconnect(); }
      if (merger) { merger.disconnect(); }
      splitter = context.createChannelSplitter(Math.max(1, channels));
      merger = context.createChannelMerger(2);
      gains = [];
      meters = [];
      source.connect(splitter);
      for (let c = 0; c < channels; c++) {
        const gain = context.createGain();
        splitter.connect(gain, c);
        gain.connect(merger, 0, 0);  // every lane in both ears: solo means "only this voice"
        gain.connect(merger, 0, 1);
        const meter = context.createAnalyser();  // what this lane sends to the speakers
        meter.fftSize = 2048;
        gain.connect(meter);
        gains.push(gain);
        meters.push(meter);
      }
      merger.connect(context.destination);
      if (context.state === "suspended") { context.resume(); }
    }

    function applyMix() {
      const soloing = lanes.some((l) => l.solo);
      lanes.forEach((lane, c) => {
        const audible = soloing ? lane.solo : !lane.mute;
        lane.element.dataset.audible = String(audible);
        lane.soloButton.setAttribute("aria-pressed", String(lane.solo));
        lane.muteButton.setAttribute("aria-pressed", String(lane.mute));
        if (gains[c]) { gains[c].gain.value = audible ? 1 : 0; }
      });
    }

    function buildLanes() {
      const box = $("lanes");
      box.textContent = "";
      lanes = [];
      const noteLane = $("note-channel");
      noteLane.textContent = "";
      noteLane.appendChild(el("option", { value: "" }, "Whole call"));
      for (let c = 0; c < Math.max(1, rec.channels); c++) {
        const name = laneName(rec, c);
        const element = el("div", { class: "lane", "data-channel": String(c), "data-audible": "true" });
        const head = el("div", { class: "lane-head" });
        head.appendChild(el("span", { class: "lane-name" }, name));
        const soloButton = el("button", { type: "button", className: "toggle solo" }, "Solo");
        soloButton.setAttribute("aria-label", "Solo " + name);
        const muteButton = el("button", { type: "button", className: "toggle mute" }, "Mute");
        muteButton.setAttribute("aria-label", "Mute " + name);
        head.appendChild(soloButton);
        head.appendChild(muteButton);
        const canvas = el("canvas", { class: "wave" });
        canvas.setAttribute("aria-hidden", "true");
        const lane = { solo: false, mute: false, element, canvas, soloButton, muteButton };
        soloButton.addEventListener("click", (e) => { e.stopPropagation(); lane.solo = !lane.solo; applyMix(); });
        muteButton.addEventListener("click", (e) => { e.stopPropagation(); lane.mute = !lane.mute; applyMix(); });
        element.appendChild(head);
        const track = el("div", { class: "track" });
        track.appendChild(canvas);
        track.appendChild(el("div", { class: "playhead", "aria-hidden": "true" }));
        element.appendChild(track);
        box.appendChild(element);
        lanes.push(lane);
        noteLane.appendChild(el("option", { value: String(c) }, name));
      }
      applyMix();
      marks();
    }

    function durationMs() {
      const a = audio();
      return isFinite(a.duration) && a.duration > 0 ? a.duration * 1000 : (rec ? rec.duration_ms : 0);
    }

    function marks() {
      // PCI pauses (where the card details were silenced) and timeline notes, per lane.
      for (const old of document.querySelectorAll(".pci-mark, .note-mark")) { old.remove(); }
      const list = $("pci-list");
      list.textContent = "";
      if (!rec) { return; }
      const total = durationMs() || 1;
      const pauses = Array.isArray(rec.pci_pauses) ? rec.pci_pauses : [];
      for (const pause of pauses) {
        const channels = Array.isArray(pause.channels) && pause.channels.length ? pause.channels : lanes.map((_, i) => i);
        const label = "PCI pause " + clockText(pause.start_ms / 1000) + "–" + clockText(pause.end_ms / 1000) +
          ": card details silenced" + (channels.length < lanes.length ? " on " + channels.map((c) => laneName(rec, c)).join(", ") : "");
        for (const c of channels) {
          const lane = lanes[c];
          if (!lane) { continue; }
          const mark = el("div", { class: "pci-mark", title: label });
          mark.style.left = (100 * pause.start_ms / total) + "%";
          mark.style.width = Math.max(0.4, 100 * (pause.end_ms - pause.start_ms) / total) + "%";
          mark.appendChild(el("span", {}, "PCI"));
          lane.element.querySelector(".track").appendChild(mark);
        }
        list.appendChild(el("li", {}, label));
      }
      if (!pauses.length && rec.pci_silenced) {
        list.appendChild(el("li", {}, secondsText(rec.pci_redacted_ms) + " of card details silenced (where: not in the catalog for this call)"));
      }
      const notes = evaluation ? evaluation.notes : [];
      for (const note of notes) {
        const targets = note.channel === null || note.channel === undefined ? lanes : [lanes[note.channel]].filter(Boolean);
        for (const lane of targets) {
          const mark = el("button", { type: "button", className: "note-mark", title: clockText(note.at_ms / 1000) + " " + note.text });
          mark.style.left = (100 * note.at_ms / total) + "%";
          mark.setAttribute("aria-label", "Note at " + clockText(note.at_ms / 1000) + ": " + note.text);
          mark.addEventListener("click", (e) => { e.stopPropagation(); seekTo(note.at_ms / 1000); });
          lane.element.querySelector(".track").appendChild(mark);
        }
      }
    }

    function draw() {
      lanes.forEach((lane, c) => {
        const canvas = lane.canvas;
        const width = Math.max(50, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
        const height = Math.max(20, Math.floor(canvas.clientHeight * (window.devicePixelRatio || 1)));
        canvas.width = width;
        canvas.height = height;
        const g = canvas.getContext("2d");
        g.clearRect(0, 0, width, height);
        g.fillStyle = "#e9eef6";
        g.fillRect(0, height / 2 - 0.5, width, 1);
        if (!waveform || !waveform.peaks[c]) { return; }
        const peaks = waveform.peaks[c];
        const n = peaks.min.length;
        g.fillStyle = c % 2 ? "#2f8f6b" : "#1f5fbf";
        for (let x = 0; x < width; x++) {
          const i = Math.min(n - 1, Math.floor(x * n / width));
          const top = height / 2 - (peaks.max[i] / 1000) * (height / 2);
          const bottom = height / 2 - (peaks.min[i] / 1000) * (height / 2);
          g.fillRect(x, top, 1, Math.max(1, bottom - top));
        }
      });
    }

    async function loadWaveform(url) {
      const points = Math.min(4000, Math.max(100, Math.floor($("lanes").clientWidth * (window.devicePixelRatio || 1))));
      const waveUrl = url.replace("/audio?", "/waveform?") + "&points=" + points;
      try {
        const response = await fetch(waveUrl);
        const body = await response.json();
        if (!response.ok) { throw new Error(describe(body, response.status)); }
        waveform = body;
        $("timeline").dataset.waveform = "ready";
        draw();
      } catch (err) {
        $("timeline").dataset.waveform = "none";
        showError("player-error", "No waveform: " + err.message);
      }
    }

    function tick() {
      const a = audio();
      const total = a.duration || (rec ? rec.duration_ms / 1000 : 0);
      const pos = a.currentTime || 0;
      for (const head of document.querySelectorAll("#lanes .playhead")) {
        head.style.left = (total ? 100 * pos / total : 0) + "%";
      }
      $("clock").textContent = clockText(pos) + " / " + clockText(total);
      const timeline = $("timeline");
      timeline.setAttribute("aria-valuemax", String(Math.round(total)));
      timeline.setAttribute("aria-valuenow", String(Math.round(pos)));
      timeline.setAttribute("aria-valuetext", clockText(pos));
      $("add-note").textContent = "Add note at " + clockText(pos);
      const toggle = $("play-toggle");
      toggle.textContent = a.paused ? "▶" : "❚❚";
      toggle.setAttribute("aria-label", a.paused ? "Play" : "Pause");
      if (!a.paused) { frame = requestAnimationFrame(tick); }
    }

    function seekTo(seconds) {
      const a = audio();
      const total = a.duration || (rec ? rec.duration_ms / 1000 : 0);
      a.currentTime = Math.max(0, Math.min(total, seconds));
      tick();
    }

    function start(recording, url) {
      rec = recording;
      waveform = null;
      showError("player-error", "");
      $("player-ui").hidden = false;
      const a = audio();
      a.src = url;
      a.playbackRate = Number($("speed").value) || 1;
      buildLanes();
      try { routing(Math.max(1, rec.channels)); } catch (err) { showError("player-error", "Lanes cannot be mixed here: " + err.message); }
      applyMix();
      a.load();
      a.play().catch(() => { /* autoplay may be blocked; the play button is there */ });
      loadWaveform(url);
      tick();
    }

    function stop() {
      const a = audio();
      a.pause();
      a.removeAttribute("src");
      a.load();
      cancelAnimationFrame(frame);
      $("player-ui").hidden = true;
      rec = null;
    }

    function toggle() {
      const a = audio();
      if (!a.src) { return; }
      if (context && context.state === "suspended") { context.resume(); }
      if (a.paused) { a.play().catch((err) => showError("player-error", "Cannot play: " + err.message)); } else { a.pause(); }
    }

    function speed(step) {
      const select = $("speed");
      const index = SPEEDS.indexOf(Number(select.value));
      const next = SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, index + step))];
      select.value = String(next);
      audio().playbackRate = next;
    }

    function level(c) {
      const meter = meters[c];
      if (!meter) { return null; }
      const data = new Float32Array(meter.fftSize);
      meter.getFloatTimeDomainData(data);
      let sum = 0;
      for (const v of data) { sum += v * v; }
      return Math.sqrt(sum / data.length);
    }

    function state() {
      return {
        lanes: lanes.map((l, c) => ({
          name: laneName(rec, c), solo: l.solo, mute: l.mute,
          audible: l.element.dataset.audible === "true",
          gain: gains[c] ? gains[c].gain.value : null, level: level(c),
          pciMarks: l.element.querySelectorAll(".pci-mark").length,
          noteMarks: l.element.querySelectorAll(".note-mark").length,
        })),
        waveform: waveform ? { channels: waveform.channels, points: waveform.points } : null,
        playbackRate: audio().playbackRate,
        currentTime: audio().currentTime,
      };
    }

    function init() {
      const a = audio();
      for (const name of ["timeupdate", "play", "pause", "seeked", "loadedmetadata", "ratechange"]) {
        a.addEventListener(name, () => { tick(); if (name === "loadedmetadata") { marks(); draw(); } });
      }
      a.addEventListener("error", () => {
        if (!a.getAttribute("src")) { return; }
        const code = a.error ? a.error.code : "?";
        showError("player-error", "The audio could not be played (media error " + code + "). Press Listen to try again.");
      });
      $("play-toggle").addEventListener("click", toggle);
      $("speed").addEventListener("change", () => { audio().playbackRate = Number($("speed").value); });
      $("timeline").addEventListener("click", (e) => {
        const box = $("lanes").getBoundingClientRect();
        const total = audio().duration || (rec ? rec.duration_ms / 1000 : 0);
        const track = $("lanes").querySelector(".track");
        const left = track ? track.getBoundingClientRect().left : box.left;
        const width = track ? track.getBoundingClientRect().width : box.width;
        if (e.clientX >= left && width > 0) { seekTo(((e.clientX - left) / width) * total); }
      });
      document.addEventListener("keydown", (e) => {
        if ($("player-ui").hidden || e.altKey || e.ctrlKey || e.metaKey) { return; }
        const tag = (e.target && e.target.tagName) || "";
        if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || (tag === "BUTTON" && e.key === " ")) { return; }
        if (e.key === " ") { e.preventDefault(); toggle(); }
        else if (e.key === "ArrowLeft") { e.preventDefault(); seekTo(audio().currentTime - (e.shiftKey ? 30 : 5)); }
        else if (e.key === "ArrowRight") { e.preventDefault(); seekTo(audio().currentTime + (e.shiftKey ? 30 : 5)); }
        else if (e.key === "ArrowUp") { e.preventDefault(); speed(1); }
        else if (e.key === "ArrowDown") { e.preventDefault(); speed(-1); }
      });
      window.addEventListener("resize", () => { draw(); });
    }

    return { start, stop, init, marks, state, seekTo, now: () => audio().currentTime || 0 };
  })();

  // ---------------------------------------------------------------- evaluation
  function renderEvaluation() {
    const box = $("evaluation");
    $("workspace").classList.toggle("with-evaluation", Boolean(evaluation));
    if (!evaluation) { box.hidden = true; return; }
    box.hidden = false;
    showError("eval-error", "");
    showError("note-error", "");
    const a = evaluation.assignment;
    const open = a.status === "open" && !evaluation.shredded;
    $("evaluation-id").textContent = a.assignment_id;
    $("evaluation-state").textContent = evaluation.form.title + " · due " + new Date(a.due_at).toLocaleDateString() +
      " · " + a.status + (evaluation.shredded ? " · the customer was erased: what was written is gone" : "");
    const questions = $("questions");
    questions.textContent = "";
    const scale = evaluation.form.scale;
    for (const section of evaluation.form.sections) {
      const set = el("fieldset", { class: "section" });
      set.appendChild(el("legend", {}, section.title + " (weight " + section.weight + ")"));
      for (const q of section.questions) {
        const id = "q-" + q.id;
        const row = el("div", { class: "question" });
        const label = el("label", { htmlFor: id }, q.text + (q.critical ? " — critical" : ""));
        const select = el("select", { id: id, disabled: !open });
        select.dataset.question = q.id;
        select.appendChild(el("option", { value: "" }, "— not scored —"));
        select.appendChild(el("option", { value: "na" }, "not applicable"));
        for (let v = scale.min; v <= scale.max; v++) {
          const name = scale.labels && scale.labels.length ? scale.labels[v - scale.min] : "";
          select.appendChild(el("option", { value: String(v) }, v + (name ? " · " + name : "")));
        }
        if (q.id in evaluation.answers) {
          const answer = evaluation.answers[q.id];
          select.value = answer === null ? "na" : String(answer);
        }
        row.appendChild(label);
        row.appendChild(select);
        set.appendChild(row);
      }
      questions.appendChild(set);
    }
    $("comment").value = evaluation.comment || "";
    $("comment").disabled = !open;
    $("save-draft").disabled = !open;
    $("complete").disabled = !open;
    $("note-text").disabled = !open;
    $("add-note").disabled = !open;
    showScore();
    renderNotes();
  }

  function showScore() {
    const s = evaluation.score;
    $("score").textContent = s.total === null ? "Score: not scored yet" :
      "Score: " + s.total + "%" + (s.passed === null ? "" : s.passed ? " · passed" : " · below the pass mark") +
      (s.failed_critical.length ? " · failed critical: " + s.failed_critical.join(", ") : "") +
      (s.complete ? "" : " · " + s.missing.length + " question(s) left");
  }

  function answers() {
    const found = {};
    for (const select of document.querySelectorAll("#questions select")) {
      if (select.value === "") { continue; }
      found[select.dataset.question] = select.value === "na" ? null : Number(select.value);
    }
    return found;
  }

  async function saveEvaluation(complete) {
    showError("eval-error", "");
    try {
      const view = await api("/v1/assignments/" + encodeURIComponent(evaluation.assignment.assignment_id) + "/evaluation", {
        method: "PUT",
        json: { answers: answers(), comment: $("comment").value.trim() || null, revision: evaluation.revision, complete },
      });
      evaluation = view;
      assignment = view.assignment;
      renderEvaluation();
      status(complete ? "Evaluation completed: " + view.score.total + "%" : "Draft saved (revision " + view.revision + ")");
      if (complete) { loadAssignments(); }
    } catch (err) {
      showError("eval-error", err.message);
    }
  }

  function renderNotes() {
    const list = $("notes");
    list.textContent = "";
    for (const note of evaluation ? evaluation.notes : []) {
      const item = el("li");
      const at = el("button", { type: "button", className: "link" }, clockText(note.at_ms / 1000));
      at.setAttribute("aria-label", "Play from " + clockText(note.at_ms / 1000));
      at.addEventListener("click", () => Player.seekTo(note.at_ms / 1000));
      item.appendChild(at);
      const lane = note.channel === null ? "" : " [" + laneName(current, note.channel) + "]";
      item.appendChild(document.createTextNode(lane + " " + note.text + " — " + note.author));
      list.appendChild(item);
    }
    Player.marks();
  }

  async function addNote(event) {
    event.preventDefault();
    showError("note-error", "");
    const text = $("note-text").value.trim();
    if (!text) { showError("note-error", "Write the note first."); return; }
    const channel = $("note-channel").value;
    try {
      const note = await api("/v1/assignments/" + encodeURIComponent(evaluation.assignment.assignment_id) + "/notes", {
        method: "POST",
        json: { at_ms: Math.round(Player.now() * 1000), text, channel: channel === "" ? null : Number(channel) },
      });
      evaluation.notes.push(note);
      evaluation.notes.sort((x, y) => x.at_ms - y.at_ms);
      $("note-text").value = "";
      renderNotes();
    } catch (err) {
      showError("note-error", err.message);
    }
  }

  // ---------------------------------------------------------------- supervisors
  async function loadPlans() {
    try {
      const page = await api("/v1/sampling-plans");
      const select = $("s-plan");
      select.textContent = "";
      for (const plan of page.plans) { select.appendChild(el("option", { value: plan.plan_id }, plan.plan_id + " — " + plan.description)); }
    } catch (err) {
      showError("sample-error", err.message);
    }
  }

  async function runSample(event) {
    event.preventDefault();
    showError("sample-error", "");
    $("sample-result").textContent = "";
    const reviewers = $("s-reviewers").value.split(",").map((r) => r.trim()).filter(Boolean);
    const body = { reviewers };
    if ($("s-period").value.trim()) { body.period = $("s-period").value.trim(); }
    try {
      const run = await api("/v1/sampling-plans/" + encodeURIComponent($("s-plan").value) + "/runs", { method: "POST", json: body });
      const excluded = Object.entries(run.excluded).map(([k, v]) => v + " " + k).join(", ");
      $("sample-result").textContent = run.period + ": " + run.assigned.length + " call(s) assigned" +
        (run.already_assigned ? ", " + run.already_assigned + " already" : "") + (excluded ? "; not sampled: " + excluded : "");
    } catch (err) {
      showError("sample-error", err.message);
    }
  }

  async function loadScores() {
    showError("scores-error", "");
    const by = $("by").value;
    $("by-head").textContent = by === "agent" ? "Agent" : "Queue";
    try {
      const page = await api("/v1/evaluations/summary?by=" + by);
      const body = $("score-rows");
      body.textContent = "";
      for (const g of page.groups) {
        const tr = el("tr");
        cell(tr, by === "agent" ? "Agent" : "Queue", g[by]);
        cell(tr, "Evaluations", String(g.evaluations));
        cell(tr, "Mean", g.mean + "%");
        cell(tr, "Min", g.min + "%");
        cell(tr, "Max", g.max + "%");
        cell(tr, "Passed", g.pass_rate === null ? "—" : Math.round(100 * g.pass_rate) + "%");
        body.appendChild(tr);
      }
    } catch (err) {
      showError("scores-error", err.message);
    }
  }

  // ---------------------------------------------------------------- start
  async function init() {
    Player.init();
    // For the browser tests (and the curious): the mix, levels and marks of the lanes,
    // and the player started on a recording's metadata.
    window.callvaultPlayer = { state: Player.state, start: (rec, url) => { current = rec; Player.start(rec, url); } };
    $("sso-signin").addEventListener("click", () => { startSso().catch((err) => showError("signin-error", err.message)); });
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) { return; }
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      signedIn();
    });
    $("sign-out").addEventListener("click", signOut);
    for (const tab of Object.keys(PANELS)) { $(tab).addEventListener("click", () => openTab(tab)); }
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); search(false); });
    $("more").addEventListener("click", () => search(true));
    $("a-status").addEventListener("change", loadAssignments);
    $("purpose").addEventListener("change", toggleDisclosure);
    $("access-form").addEventListener("submit", listen);
    $("download").addEventListener("click", download);
    $("evaluation-form").addEventListener("submit", (event) => { event.preventDefault(); saveEvaluation(true); });
    $("save-draft").addEventListener("click", () => saveEvaluation(false));
    $("note-form").addEventListener("submit", addNote);
    $("sample-form").addEventListener("submit", runSample);
    $("by").addEventListener("change", loadScores);

    try {
      const response = await fetch("/v1/auth/config");
      authConfig = response.ok ? await response.json() : null;
      if (!response.ok) { showError("signin-error", "Single sign-on is unavailable right now; use an access token or try again."); }
    } catch (err) {
      authConfig = null;
    }
    const sso = Boolean(authConfig && authConfig.sso);
    $("sso-block").hidden = !sso && !$("signin-error").textContent;
    $("token-block").open = !sso;
    if (authConfig && location.pathname === authConfig.callback_path) {
      status("Signing in…");
      try {
        await finishSso();
      } catch (err) {
        status("");
        $("sso-block").hidden = false;
        showError("signin-error", err.message);
        return;
      }
      status("");
    } else if (location.pathname !== "/") {
      history.replaceState(null, "", "/");
    }
    if (token()) { signedIn(); }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
