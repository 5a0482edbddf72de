// The console's softphone: listen in on, barge into or join a live call, and call the agent from the browser.
// Bundled with livekit-client into static/softphone.js (npm run build); the pages load only that file.
import {
  ParticipantKind,
  Room,
  RoomEvent,
  Track,
  createLocalAudioTrack,
} from "livekit-client";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const AGENT_STATE = "lk.agent.state";

// What the page is connected to, for whoever needs the room's tracks (a recorder, a level meter, a test).
const softphone = { room: null, micTrack: null, callId: "", mode: "" };
window.switchboardSoftphone = softphone;

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { /* an empty body */ }
  if (response.status === 401) {
    location.href = "/console/login?reason=expired&next=" + encodeURIComponent(location.pathname);
  }
  return { ok: response.ok, status: response.status, data };
}

function errorText(result) {
  return (result.data && result.data.error && result.data.error.message) || ("request failed (" + result.status + ")");
}

function show(id, text) {
  const node = document.getElementById(id);
  if (!node) return;
  node.textContent = text;
  node.hidden = !text;
}

// Why the browser gave us no microphone, in words a supervisor can act on.
function microphoneProblem(error) {
  const name = (error && error.name) || "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return "The browser denied the microphone. Allow it for this site (the icon in the address bar) and try again.";
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError") {
    return "No microphone was found. Plug one in and try again.";
  }
  if (name === "NotReadableError") {
    return "The microphone is in use by another program. Close it and try again.";
  }
  return "The microphone could not be opened (" + (name || String(error)) + ").";
}

async function openMicrophone() {
  // Echo cancellation matters: the supervisor hears the caller through their speakers.
  return createLocalAudioTrack({ echoCancellation: true, noiseSuppression: true, autoGainControl: true });
}

function newRoom(audioBox) {
  const room = new Room({ adaptiveStream: false, dynacast: false });
  room.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind !== Track.Kind.Audio) return;
    const element = track.attach();
    element.dataset.sid = track.sid || "";
    audioBox.append(element);
  });
  room.on(RoomEvent.TrackUnsubscribed, (track) => { for (const el of track.detach()) el.remove(); });
  return room;
}

async function leaveRoom() {
  const room = softphone.room;
  softphone.room = null;
  if (softphone.micTrack) { softphone.micTrack.stop(); softphone.micTrack = null; }
  if (room) await room.disconnect();
}

// ---------------------------------------------------------------- the live call page
function callSoftphone(panel) {
  const callId = panel.dataset.callId;
  const speakMode = panel.dataset.speakMode || "barge";
  const audioBox = document.getElementById("sp-audio");
  const buttons = {
    listen: document.getElementById("sp-listen"),
    barge: document.getElementById("sp-barge"),
    leave: document.getElementById("sp-leave"),
  };
  let busy = false;

  function state(mode, text) {
    panel.dataset.state = mode;
    show("sp-state", text);
    buttons.listen.disabled = busy || mode === "listen";
    buttons.barge.disabled = busy || mode === "barge" || mode === "escalation";
    buttons.leave.disabled = busy || mode === "idle";
  }

  async function join(mode, microphone) {
    show("sp-error", "");
    const result = await post("/v1/console/calls/" + encodeURIComponent(callId) + "/join", { mode });
    if (!result.ok) throw new Error(errorText(result));
    await leaveRoom();
    const room = newRoom(audioBox);
    room.on(RoomEvent.Disconnected, () => {
      if (softphone.room === room || softphone.room === null) state("idle", "Not connected to the call's audio.");
    });
    await room.connect(result.data.url, result.data.token, { autoSubscribe: true });
    softphone.room = room;
    softphone.callId = callId;
    softphone.mode = mode;
    if (microphone) {
      await room.localParticipant.publishTrack(microphone, { source: Track.Source.Microphone });
      softphone.micTrack = microphone;
    }
    // A page opened without a click (a reload) may not play audio until the user interacts.
    await room.startAudio().catch(() => {});
  }

  async function run(mode, work) {
    const before = { mode: panel.dataset.state || "idle", text: document.getElementById("sp-state").textContent };
    busy = true;
    state(before.mode, "Connecting…");
    try {
      await work();
      busy = false;
      state(mode, mode === "listen"
        ? "Listening in: the caller cannot hear or see you."
        : "On the call with your microphone: the AI stays silent while you have the call.");
    } catch (error) {
      busy = false;
      show("sp-error", error.message || String(error));
      // Refused before leaving the room it was in (someone else holds the call): still there, as before.
      if (softphone.room) state(before.mode, before.text);
      else state("idle", "Not connected to the call's audio.");
    }
  }

  buttons.listen.addEventListener("click", () => run("listen", () => join("listen", null)));
  buttons.barge.addEventListener("click", async () => {
    // The microphone first: a supervisor whose browser refuses it must not take the call off the AI.
    let microphone;
    try {
      microphone = await openMicrophone();
    } catch (error) {
      show("sp-error", microphoneProblem(error) + " You can still listen in.");
      return;
    }
    await run(speakMode, async () => {
      try {
        await join(speakMode, microphone);
      } catch (error) {
        microphone.stop();
        throw error;
      }
    });
  });
  buttons.leave.addEventListener("click", async () => {
    const mode = softphone.mode;
    busy = true;
    await leaveRoom();
    busy = false;
    if (mode === "barge") {
      // Barging took the call over; leaving gives it back, or the caller would be left with nobody.
      const result = await post("/v1/console/calls/" + encodeURIComponent(callId) + "/release");
      if (!result.ok && result.status !== 409) show("sp-error", errorText(result));
    }
    state("idle", mode === "barge" ? "You left; the call is back with the AI." : "You left the call's audio.");
  });
  // The call ending (the caller hung up) ends the audio too.
  const call = document.getElementById("call");
  if (call) {
    new MutationObserver(() => {
      if (call.dataset.status && call.dataset.status !== "live" && softphone.room) {
        leaveRoom().then(() => state("idle", "The call has ended."));
      }
    }).observe(call, { attributes: true, attributeFilter: ["data-status"] });
  }
  state("idle", "Not connected to the call's audio.");
}

// ---------------------------------------------------------------- calling the agent
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text; // never innerHTML: transcripts are speech
  return node;
}

function waitFor(room, check) {
  // Resolves once check() holds; re-checked on every participant change.
  return new Promise((resolve, reject) => {
    const events = [RoomEvent.ParticipantConnected, RoomEvent.ParticipantAttributesChanged];
    const done = () => { for (const e of events) room.off(e, test); room.off(RoomEvent.Disconnected, gone); };
    const test = () => { if (check()) { done(); resolve(); } };
    const gone = () => { done(); reject(new Error("The call ended before the agent answered.")); };
    for (const e of events) room.on(e, test);
    room.on(RoomEvent.Disconnected, gone);
    test();
  });
}

function agentListening(room) {
  for (const p of room.remoteParticipants.values()) {
    if (p.kind === ParticipantKind.AGENT && p.attributes[AGENT_STATE] === "listening") return true;
  }
  return false;
}

function talkPage(panel) {
  const call = document.getElementById("talk-call");
  const hangUp = document.getElementById("talk-hang-up");
  const callerId = document.getElementById("talk-caller-id");
  const transcript = document.getElementById("transcript");
  const audioBox = document.getElementById("sp-audio");
  let stream = null;

  function state(mode, text) {
    panel.dataset.state = mode;
    show("talk-state", text);
    call.disabled = mode !== "idle";
    hangUp.disabled = mode === "idle";
  }

  function addLine(line, seen) {
    if (seen.has(line.id)) return;
    seen.add(line.id);
    const row = el("div", "line " + line.role);
    row.dataset.role = line.role;
    row.dataset.agent = line.agent;
    const who = line.role === "caller" ? "you" : line.role === "agent" ? "AI · " + line.agent
      : line.role === "human" ? line.agent + " (human)" : "";
    if (who) row.append(el("b", "", who));
    row.append(document.createTextNode(" " + line.text));
    transcript.append(row);
    transcript.scrollTop = transcript.scrollHeight;
  }

  async function follow(callId) {
    // The worker publishes the call once it answers; until then there is no transcript to follow.
    const url = "/v1/console/calls/" + encodeURIComponent(callId);
    while (softphone.callId === callId) {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    if (softphone.callId !== callId) return;
    const seen = new Set();
    stream = new EventSource(url + "/stream");
    stream.addEventListener("line", (e) => addLine(JSON.parse(e.data), seen));
    stream.addEventListener("call", (e) => {
      const c = JSON.parse(e.data);
      panel.dataset.callStatus = c.status;
      if (c.status !== "live" && stream) { stream.close(); stream = null; }
    });
  }

  call.addEventListener("click", async () => {
    show("talk-error", "");
    state("connecting", "Checking the microphone…");
    // Asked first, so a refusal places no call; released at once, and opened again when the agent answers.
    try {
      (await openMicrophone()).stop();
    } catch (error) {
      show("talk-error", microphoneProblem(error));
      state("idle", "Not on a call.");
      return;
    }
    state("connecting", "Calling…");
    const result = await post("/v1/console/talk", { caller_id: callerId.value.trim() });
    if (!result.ok) {
      show("talk-error", errorText(result));
      state("idle", "Not on a call.");
      return;
    }
    transcript.replaceChildren();
    const room = newRoom(audioBox);
    softphone.room = room;
    softphone.mode = "talk";
    room.on(RoomEvent.Disconnected, () => {
      if (softphone.room === room) softphone.room = null;
      softphone.callId = "";
      state("idle", "Call ended.");
    });
    try {
      await room.connect(result.data.url, result.data.token, { autoSubscribe: true });
      // The call is lk-<room sid> (the webhook names it so): the transcript is found under it.
      softphone.callId = "lk-" + (await room.getSid()).replace(/[^A-Za-z0-9._:-]/g, "_");
      panel.dataset.callId = softphone.callId;
      follow(softphone.callId);
      state("ringing", "Ringing: waiting for the agent to answer…");
      await waitFor(room, () => agentListening(room));
      // Opened as the agent starts listening, so the first words reach it.
      try {
        softphone.micTrack = await openMicrophone();
      } catch (error) {
        throw new Error(microphoneProblem(error));
      }
      await room.localParticipant.publishTrack(softphone.micTrack, { source: Track.Source.Microphone });
      await room.startAudio().catch(() => {});
      state("live", "On the call: speak to the agent.");
    } catch (error) {
      show("talk-error", error.message || String(error));
      await leaveRoom();
      state("idle", "Not on a call.");
    }
  });
  hangUp.addEventListener("click", async () => {
    await leaveRoom();
    state("idle", "Call ended.");
  });
  state("idle", "Not on a call.");
}

function start() {
  if (!csrf) return;
  const panel = document.getElementById("softphone");
  if (panel) callSoftphone(panel);
  const talk = document.getElementById("talk");
  if (talk) talkPage(talk);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
