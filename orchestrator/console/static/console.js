// Switchboard console: a little vanilla JavaScript over the /v1/console API (no build step, no CDN).
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

async function api(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  let data = null;
  try { data = await response.json(); } catch (_) { /* SSE or empty bodies */ }
  if (response.status === 401) {
    location.href = "/console/login?reason=expired&next=" + encodeURIComponent(location.pathname);
  }
  return { ok: response.ok, status: response.status, data };
}

function flash(message, kind) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = "flash " + (kind || "info");
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

function errorText(result) {
  return (result.data && result.data.error && result.data.error.message) || ("request failed (" + result.status + ")");
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text; // never innerHTML: transcripts are caller input
  return node;
}

function seconds(s) {
  s = Math.max(0, Math.round(s));
  return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
}

// ---------------------------------------------------------------- live calls list
function renderCalls(calls) {
  const body = document.querySelector("#live-calls tbody");
  body.replaceChildren();
  for (const c of calls) {
    const row = el("tr");
    row.dataset.callId = c.call_id;
    const caller = el("td", "customer");
    if (c.account_id) {
      caller.append(el("b", "", c.customer || c.account_id), " ", el("span", "sub", c.account_id));
    } else caller.append("not verified yet");
    caller.append(el("div", "sub", c.caller_id || "unknown number"));
    const agent = el("td");
    agent.append(el("span", "agent agent-" + c.agent, c.agent));
    const mood = el("td");
    mood.append(el("span", "mood mood-" + c.sentiment, c.sentiment));
    const flags = el("td");
    for (const f of c.flags) flags.append(el("span", "flag", f));
    const open = el("td");
    const link = el("a", "button", "Open");
    link.href = "/console/calls/" + encodeURIComponent(c.call_id);
    open.append(link);
    const dur = el("td", "dur", seconds(c.duration_s));
    row.append(caller, el("td", "", c.intent || "—"), agent, dur, mood, flags, el("td", "", c.controller), open);
    body.append(row);
  }
  document.getElementById("live-count").textContent = calls.length;
  document.getElementById("no-calls").hidden = calls.length > 0;
}

async function pollCalls() {
  const result = await api("GET", "/v1/console/calls");
  if (result.ok) renderCalls(result.data);
  setTimeout(pollCalls, 1000);
}

// ---------------------------------------------------------------- one call
function callPage() {
  const root = document.getElementById("call");
  const callId = root.dataset.callId;
  const me = root.dataset.me;
  const transcript = document.getElementById("transcript");
  const seen = new Set();
  const base = "/v1/console/calls/" + encodeURIComponent(callId);

  function addLine(line) {
    if (seen.has(line.id)) return;
    seen.add(line.id);
    const row = el("div", "line " + line.role);
    row.dataset.role = line.role;
    row.dataset.agent = line.agent;
    // Every line says who spoke it: the caller, an AI agent by name, or a person by username.
    const who = line.role === "caller" ? "caller"
      : line.role === "agent" ? "AI · " + line.agent
      : line.role === "human" ? line.agent + " (human)" : "";
    if (who) row.append(el("b", "", who));
    row.append(document.createTextNode(" " + line.text));
    transcript.append(row);
    transcript.scrollTop = transcript.scrollHeight;
  }

  function showCall(c) {
    document.getElementById("f-status").textContent = c.status;
    document.getElementById("f-agent").textContent = c.agent;
    document.getElementById("f-intent").textContent = c.intent || "—";
    document.getElementById("f-sentiment").textContent = c.sentiment;
    document.getElementById("f-flags").textContent = c.flags.join(", ") || "—";
    document.getElementById("f-controller").textContent = c.controller || "the AI";
    const mine = c.controller === me;
    document.getElementById("take-over-btn").disabled = mine || c.status !== "live";
    document.getElementById("release-btn").disabled = !c.controller || c.status !== "live";
    document.getElementById("say-btn").textContent = mine ? "Reply as human" : "Barge in";
    // The footer says what the call is, not only that the stream is connected.
    if (c.status !== "live") document.getElementById("stream-state").textContent = "call ended";
    root.dataset.status = c.status;
    root.dataset.controller = c.controller;
  }

  const state = document.getElementById("stream-state");
  const stream = new EventSource(base + "/stream");
  stream.addEventListener("open", () => { if (root.dataset.status === "live") state.textContent = "live"; });
  stream.addEventListener("error", () => { state.textContent = "reconnecting…"; });
  stream.addEventListener("line", (e) => addLine(JSON.parse(e.data)));
  stream.addEventListener("call", (e) => showCall(JSON.parse(e.data)));
  stream.addEventListener("session_ended", () => {
    // Logged out elsewhere, expired, or the account changed: reconnecting would only be refused.
    stream.close();
    location.href = "/console/login?reason=expired&next=" + encodeURIComponent(location.pathname);
  });

  async function act(url, body, done) {
    const result = await api("POST", base + url, body);
    if (result.ok) flash(done, "ok");
    else flash(errorText(result), "error");
    return result;
  }

  document.getElementById("whisper-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = document.getElementById("whisper-text");
    if (!input.value.trim()) return;
    const r = await api("POST", base + "/whisper", { text: input.value });
    if (r.ok) {
      const action = r.data.action;
      flash(action === "whisper" ? "Whisper sent: the agent's next reply follows it."
        : action === "escalate" ? "Followed: the call goes to a person."
        : "Followed: the call goes to " + action.replace("reroute:", "") + ".", "ok");
      input.value = "";
    } else flash(errorText(r), "error");
  });
  document.getElementById("say-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = document.getElementById("say-text");
    if (!input.value.trim()) return;
    const r = await act("/say", { text: input.value }, "Said to the caller.");
    if (r.ok) input.value = "";
  });
  document.getElementById("take-over-btn").addEventListener("click", () =>
    act("/take-over", undefined, "You have the call: the AI has stopped answering."));
  document.getElementById("release-btn").addEventListener("click", () =>
    act("/release", undefined, "The call is back with the AI."));
  document.getElementById("reroute-btn").addEventListener("click", () => {
    const agent = document.getElementById("reroute-agent").value;
    act("/reroute", { agent }, "Re-routed to " + agent + ".");
  });
}

// ---------------------------------------------------------------- escalations
async function accept(ticket) {
  const result = await api("POST", "/v1/console/escalations/" + encodeURIComponent(ticket) + "/accept");
  if (result.ok) location.href = "/console/escalations/" + encodeURIComponent(ticket);
  else flash(errorText(result), "error");
}

function escalationButtons() {
  document.body.addEventListener("click", (e) => {
    const button = e.target.closest("button.accept");
    if (button) accept(button.dataset.ticket);
  });
  const wrapup = document.getElementById("wrapup-form");
  if (wrapup) wrapup.addEventListener("submit", async (e) => {
    e.preventDefault();
    const disposition = document.getElementById("disposition").value;
    if (!disposition) { flash("Pick a wrap-up code first.", "error"); return; }
    const note = document.getElementById("wrapup-note").value;
    const result = await api("POST", "/v1/console/escalations/" + encodeURIComponent(wrapup.dataset.ticket) + "/close",
      { disposition, note });
    if (result.ok) location.href = "/console/escalations";
    else flash(errorText(result), "error");
  });
}

function queueRow(t, callback) {
  const row = el("tr");
  row.dataset.ticketId = t.ticket_id;
  row.dataset.callId = t.call_id;
  row.dataset.live = t.call_live ? "yes" : "no";
  const prio = el("td");
  prio.append(el("span", "prio prio-" + t.priority, "P" + t.priority));
  const caller = el("td", "caller");
  if (t.customer) caller.append(el("b", "", t.customer), el("br"));
  caller.append(t.caller || "unknown number");
  if (!callback && !t.call_live) caller.append(el("div", "sub", "not seen on the line"));
  const reason = el("td", "", t.reason.replaceAll("_", " "));
  const sub = el("div", "sub");
  const link = el("a", "transcript-link", "transcript");
  link.href = t.transcript_url;
  sub.append(link);
  reason.append(sub);
  const when = callback
    ? el("td", "left", t.left_at ? new Date(t.left_at).toLocaleTimeString() : "")
    : el("td", "wait", seconds(t.waiting_s));
  const action = el("td");
  if (callback) {
    const open = el("a", "button", "Open");
    open.href = "/console/escalations/" + encodeURIComponent(t.ticket_id);
    action.append(open);
  } else {
    const button = el("button", "primary accept", "Accept");
    button.dataset.ticket = t.ticket_id;
    action.append(button);
  }
  row.append(prio, caller, reason, when, el("td", "summary", t.summary), action);
  return row;
}

function renderQueue(tickets) {
  const body = document.querySelector("#escalations tbody");
  body.replaceChildren(...tickets.map((t) => queueRow(t, false)));
  document.getElementById("queue-count").textContent = tickets.length;
  document.getElementById("no-escalations").hidden = tickets.length > 0;
}

function renderCallbacks(tickets) {
  const body = document.querySelector("#callbacks tbody");
  body.replaceChildren(...tickets.map((t) => queueRow(t, true)));
  document.getElementById("callback-count").textContent = tickets.length || "";
  document.getElementById("no-callbacks").hidden = tickets.length > 0;
}

async function pollQueue() {
  const result = await api("GET", "/v1/console/escalations");
  if (result.ok) {
    const badge = document.getElementById("esc-count");
    if (badge) badge.textContent = result.data.length || "";
    if (document.getElementById("escalations")) renderQueue(result.data);
  }
  if (document.getElementById("callbacks")) {
    const owed = await api("GET", "/v1/console/callbacks");
    if (owed.ok) renderCallbacks(owed.data);
  }
  setTimeout(pollQueue, 2000);
}

// ---------------------------------------------------------------- wallboard
function percent(x) { return x === null || x === undefined ? "—" : Math.round(x * 100) + " %"; }

function renderBoard(b) {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("wb-waiting", b.waiting);
  set("wb-waiting-split", b.waiting_for_ai + " for the AI · " + b.waiting_for_person + " for a person");
  set("wb-longest", Math.round(b.longest_wait_s) + " s");
  set("wb-sla", percent(b.service_level));
  set("wb-abandon", percent(b.abandonment_rate));
  set("wb-hung-up", b.hung_up_in_queue + " hung up in the queue");
  set("wb-ai", b.ai_handled + " / " + b.escalated);
  set("wb-people", b.people_available.length);
  set("wb-people-names", b.people_available.join(", ") || "nobody signed in");
  set("wb-callbacks", b.callbacks);
  set("wb-today", b.calls_today);
  set("wb-wrapups", Object.entries(b.wrapups_today).map(([k, v]) => k.replaceAll("_", " ") + " " + v).join(" · ")
    || "no escalations closed yet today");
  set("wb-updated", "live · " + new Date().toLocaleTimeString());
  const body = document.querySelector("#wb-live tbody");
  body.replaceChildren(...b.live.map((c) => {
    const row = el("tr");
    row.dataset.callId = c.call_id;
    const who = el("td", "", c.customer || "not verified yet");
    if (c.account_id) who.append(" ", el("span", "sub", c.account_id));
    row.append(who, el("td", "", c.intent || "—"), el("td", "", c.agent), el("td", "", seconds(c.duration_s)),
      el("td", "", c.sentiment), el("td", "", c.controller || "the AI"));
    return row;
  }));
}

async function pollBoard() {
  const sla = document.getElementById("wallboard").dataset.sla;
  const result = await api("GET", "/v1/console/wallboard?sla_s=" + encodeURIComponent(sla));
  if (result.ok) renderBoard(result.data);
  setTimeout(pollBoard, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  if (!csrf) return; // the login page
  if (document.getElementById("wallboard")) pollBoard();
  if (document.getElementById("live-calls")) pollCalls();
  if (document.getElementById("call")) callPage();
  escalationButtons();
  pollQueue();
});
