// The page of `qkv serve`: one tab per model family the server has, each calling its endpoint
// (see the HTTP API). Plain DOM code, no framework, nothing loaded from elsewhere: the server
// may be offline. Each panel's data-state (busy, done, error) tells a test when a call ended.
"use strict";

const $ = (id) => document.getElementById(id);

// Families of GET /v1/models → the tab that uses them.
const TABS = { seq2seq: "translate", gpt: "generate", vit: "classify" };

// Shows an endpoint's JSON error ({"error": {"message", "field"}}) or any other failure in
// the panel's error line; null hides it.
function showError(tab, message) {
  const p = $(tab + "-error");
  p.textContent = message || "";
  p.hidden = !message;
  if (message) $("panel-" + tab).dataset.state = "error";
}

// The message of a failed response: the JSON error's message when there is one.
async function errorOf(response) {
  try {
    const body = await response.json();
    if (body.error && body.error.message) return body.error.message;
  } catch (e) {
    // Not JSON: fall through to the status line.
  }
  return `${response.status} ${response.statusText}`;
}

// POST JSON; returns the parsed answer or throws an Error with the server's message.
async function postJson(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw new Error(await errorOf(response));
  return response;
}

// ---- Tabs: the WAI-ARIA pattern (arrow keys move between the visible tabs). ----

function visibleTabs() {
  return [...document.querySelectorAll('[role="tab"]')].filter((t) => !t.hidden);
}

function selectTab(tab) {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    const selected = t === tab;
    t.setAttribute("aria-selected", String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !selected;
  }
}

function setUpTabs() {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    t.addEventListener("click", () => selectTab(t));
    t.addEventListener("keydown", (e) => {
      const tabs = visibleTabs();
      let i = tabs.indexOf(t);
      if (e.key === "ArrowRight") i = (i + 1) % tabs.length;
      else if (e.key === "ArrowLeft") i = (i - 1 + tabs.length) % tabs.length;
      else if (e.key === "Home") i = 0;
      else if (e.key === "End") i = tabs.length - 1;
      else return;
      e.preventDefault();
      selectTab(tabs[i]);
      tabs[i].focus();
    });
  }
}

// Fills the model selectors and shows the tabs of the families present.
async function loadModels() {
  const status = $("status");
  try {
    const response = await fetch("/v1/models");
    if (!response.ok) throw new Error(await errorOf(response));
    const models = (await response.json()).data;
    for (const m of models) {
      const tab = TABS[m.family];
      if (!tab) continue;
      $(tab + "-model").append(new Option(m.id, m.id));
      $("tab-" + tab).hidden = false;
    }
    const tabs = visibleTabs();
    if (tabs.length === 0) {
      status.textContent = "The server has no model this page can use.";
      return;
    }
    status.textContent = "";
    status.hidden = true;
    selectTab(tabs[0]);
  } catch (e) {
    status.textContent = "Could not load the models: " + e.message;
  }
}

// ---- Translate: one sentence per line in, one translation per line out. ----

async function translate(event) {
  event.preventDefault();
  const panel = $("panel-translate");
  const button = $("translate-button");
  const output = $("translate-output");
  // Empty lines are kept as empty lines but not sent, so the output lines match the input's.
  const lines = $("translate-input").value.replace(/\n+$/, "").split("\n");
  const text = lines.filter((l) => l.trim() !== "");
  showError("translate", null);
  output.textContent = "";
  if (text.length === 0) return;
  panel.dataset.state = "busy";
  button.disabled = true;
  try {
    const response = await postJson("/v1/translate", {
      model: $("translate-model").value,
      text,
      beam: Number($("translate-beam").value) || 1,
    });
    const translations = (await response.json()).translations;
    let next = 0;
    output.textContent = lines.map((l) => (l.trim() === "" ? "" : translations[next++])).join("\n");
    panel.dataset.state = "done";
  } catch (e) {
    showError("translate", e.message);
  } finally {
    button.disabled = false;
  }
}

// ---- Generate: the completion streamed as server-sent events, stoppable. ----

let generation = null;  // the AbortController of the running generation

function numberOrUndefined(id) {
  const v = $(id).value.trim();
  return v === "" ? undefined : Number(v);
}

// Calls onEvent with each event's data ("data: ..." lines) of a text/event-stream body.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data !== "" && onEvent(data) === false) return;
    }
  }
}

async function generate(event) {
  event.preventDefault();
  const panel = $("panel-generate");
  const output = $("generate-output");
  const status = $("generate-status");
  showError("generate", null);
  output.textContent = "";
  status.textContent = "Generating…";
  panel.dataset.state = "busy";
  $("generate-button").disabled = true;
  $("generate-stop").disabled = false;
  generation = new AbortController();
  let finish = null;
  try {
    const response = await postJson(
      "/v1/completions",
      {
        model: $("generate-model").value,
        prompt: $("generate-prompt").value,
        max_tokens: numberOrUndefined("generate-max-tokens"),
        temperature: numberOrUndefined("generate-temperature"),
        top_p: numberOrUndefined("generate-top-p"),
        top_k: numberOrUndefined("generate-top-k"),
        seed: numberOrUndefined("generate-seed"),
        stream: true,
      },
      generation.signal,
    );
    await readEvents(response.body, (data) => {
      if (data === "[DONE]") return false;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices[0];
      output.textContent += choice.text;
      if (choice.finish_reason) finish = choice.finish_reason;
      return true;
    });
    status.textContent = finish ? `Done (${finish}).` : "Done.";
    panel.dataset.state = "done";
  } catch (e) {
    if (e.name === "AbortError") {
      status.textContent = "Stopped.";
      panel.dataset.state = "done";
    } else {
      status.textContent = "";
      showError("generate", e.message);
    }
  } finally {
    generation = null;
    $("generate-button").disabled = false;
    $("generate-stop").disabled = true;
  }
}

function stopGeneration() {
  if (generation) generation.abort();
}

// ---- Classify: an image file → its preview and the top-5 classes as bars. ----

async function classify(file) {
  const panel = $("panel-classify");
  const list = $("classify-output");
  const preview = $("classify-preview");
  showError("classify", null);
  list.replaceChildren();
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  panel.dataset.state = "busy";
  try {
    const query = new URLSearchParams({ model: $("classify-model").value, top_k: "5" });
    const response = await fetch("/v1/classify?" + query, {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    for (const p of (await response.json()).predictions[0]) list.append(classRow(p));
    panel.dataset.state = "done";
  } catch (e) {
    showError("classify", e.message);
  }
}

// One class: its label, a bar as long as its probability, and the percentage.
function classRow(prediction) {
  const percent = (100 * prediction.probability).toFixed(2) + "%";
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = prediction.label;
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.setAttribute("role", "meter");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-valuenow", (100 * prediction.probability).toFixed(2));
  bar.setAttribute("aria-label", prediction.label);
  const fill = document.createElement("span");
  fill.style.width = percent;
  bar.append(fill);
  const value = document.createElement("span");
  value.className = "percent";
  value.textContent = percent;
  li.append(label, bar, value);
  return li;
}

function setUpDrop() {
  const drop = $("classify-drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) classify(file);
  });
  $("classify-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) classify(file);
  });
}

setUpTabs();
setUpDrop();
$("translate-form").addEventListener("submit", translate);
$("generate-form").addEventListener("submit", generate);
$("generate-stop").addEventListener("click", stopGeneration);
loadModels();
