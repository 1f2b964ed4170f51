// callvault pages' shared helpers (the QA page and the privacy office page): plain JS,
// no build step, loaded before each page's own script. Defines window.callvault:
//
//   TOKEN_KEY           where both pages keep the bearer token (sessionStorage, this tab)
//   $(id), token(), status(message), showError(boxId, message)
//   el(tag, attrs, text), cell(row, label, text, cls)   DOM building (card-view labels)
//   ApiError            an API refusal: message, status, reason
//   describer(reasons, verb, withDetail) -> describe(body, httpStatus)
//                       "<verb> (<reason>): <text>", text from the page's reasons table
//   client(describe, signOut) -> api(path, options)
//                       fetch with the token; options.json is sent as JSON; resolves to
//                       the JSON body; a 401 (other than a playback grant's) signs out
//                       and shows the error; a refusal rejects with an ApiError
"use strict";

window.callvault = (function () {
  const TOKEN_KEY = "callvault.token";
  const $ = (id) => document.getElementById(id);

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function status(message) { $("status").textContent = message || ""; }

  function showError(id, message) {
    const box = $(id);
    box.textContent = message || "";
    box.hidden = !message;
    if (message) { box.scrollIntoView({ block: "nearest" }); }
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") { node.className = v; } else if (k.startsWith("data-") || k.startsWith("aria-")) { node.setAttribute(k, v); } else { node[k] = v; }
    }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // One table cell; ``label`` is its card-view label (qa.css, below 720 px).
  function cell(row, label, text, cls) {
    const td = el("td", { "data-label": label || "" }, text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  class ApiError extends Error {
    constructor(message, httpStatus, reason) { super(message); this.status = httpStatus; this.reason = reason; }
  }

  function describer(reasons, verb, withDetail) {
    return function describe(body, httpStatus) {
      const reason = body && body.reason;
      const detail = body && body.detail;
      const known = reason && reasons[reason];
      const text = known || detail || ("HTTP " + httpStatus);
      if (!reason) { return text; }
      return verb + " (" + reason + "): " + text + (withDetail && known && detail ? " " + detail : "");
    };
  }

  function client(describe, signOut) {
    return async function api(path, options) {
      const init = Object.assign({ headers: {} }, options || {});
      init.headers = Object.assign({ Authorization: "Bearer " + token() }, init.headers);
      if (init.json !== undefined) {
        init.body = JSON.stringify(init.json);
        init.headers["Content-Type"] = "application/json";
        delete init.json;
      }
      const response = await fetch(path, init);
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (response.status === 401 && !(body && String(body.reason || "").startsWith("grant-"))) {
        signOut();
        showError("error", describe(body, response.status));
      }
      if (!response.ok) {
        throw new ApiError(describe(body, response.status), response.status, body && body.reason);
      }
      return body;
    };
  }

  return Object.freeze({ TOKEN_KEY, $, token, status, showError, el, cell, ApiError, describer, client });
})();
