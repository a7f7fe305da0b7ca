// The g2face page: uploads one photo per request, polls each job, shows before/after, faces and downloads.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const HEADERS = { "X-G2Face": "1" }; // the server refuses state-changing requests without it
const STATUS_TEXT = {
  anonymized: "anonymized",
  exact: "recovered exactly",
  identity: "recovered at identity level",
  "wrong password": "wrong password or key",
  "no payload": "no payload",
};

let action = "anonymize";
let config = null;
let chosen = [];
const jobs = []; // {id, action, card, state, downloadName}

async function loadConfig() {
  const response = await fetch("/api/config");
  config = await response.json();
  $("#hint").textContent =
    `Up to ${(config.max_upload_bytes / 2 ** 20).toFixed(0)} MB and ${(config.max_pixels / 1e6).toFixed(0)} MP ` +
    `per photo. Model: ${config.model}. PNG keeps the recovery data exactly; JPEG and WebP recompress the face.`;
}

function selectTab(next) {
  action = next;
  for (const tab of document.querySelectorAll("nav [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.action === action));
  }
  for (const el of document.querySelectorAll(".anonymize-only")) el.hidden = action !== "anonymize";
  $("#start").textContent = action === "anonymize" ? "Anonymize" : "Recover";
  $("#drop-text").textContent = dropText();
  updateSummary();
}

function dropText() {
  if (chosen.length) {
    const names = chosen.map((f) => f.name).join(", ");
    return `${chosen.length} photo${chosen.length > 1 ? "s" : ""} chosen: ${names}`;
  }
  return action === "anonymize"
    ? "Drop photos here, or click to choose"
    : "Drop anonymized photos here (as downloaded, with their recovery data), or click to choose";
}

function choose(files) {
  chosen = Array.from(files);
  $("#drop-text").textContent = dropText();
}

function newCard(name, jobAction) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  card.dataset.action = jobAction;
  $(".name", card).textContent = `${jobAction === "anonymize" ? "Anonymize" : "Recover"}: ${name}`;
  $(".slider", card).addEventListener("input", (event) => {
    $(".after-clip", card).style.clipPath = `inset(0 0 0 ${event.target.value}%)`;
  });
  $("#results").prepend(card);
  return card;
}

function setStatus(card, state, text) {
  card.dataset.state = state;
  $(".status", card).textContent = text;
}

async function start(event) {
  event.preventDefault();
  const password = $("#password").value;
  const keyFile = $("#key-file").files[0];
  if (!chosen.length) return alert("Choose or drop at least one photo first.");
  if (!password && !keyFile) return alert("Enter a password or choose a key file.");
  const files = chosen;
  choose([]);
  $("#files").value = "";
  $("#summary").hidden = false;
  for (const file of files) {
    const card = newCard(file.name, action);
    const job = { id: null, action, card, state: "queued" };
    jobs.push(job);
    if (file.size > config.max_upload_bytes) {
      job.state = "failed";
      setStatus(card, "failed",
        `${file.name}: ${(file.size / 2 ** 20).toFixed(1)} MB is over this server's upload limit of ` +
        `${config.max_upload_bytes / 2 ** 20} MB; downscale or re-export it`);
      continue;
    }
    const form = new FormData();
    form.append("action", action);
    form.append("method", $("#method").value);
    form.append("format", $("#format").value);
    if (keyFile) form.append("key_file", keyFile, keyFile.name);
    else form.append("password", password);
    form.append("photo", file, file.name);
    setStatus(card, "queued", "uploading…");
    try {
      const response = await fetch("/api/jobs", { method: "POST", body: form, headers: HEADERS });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      job.id = body.id;
      for (const warning of body.warnings) addNote(card, warning);
      setStatus(card, "queued", "waiting…");
      poll(job);
    } catch (error) {
      job.state = "failed";
      setStatus(card, "failed", error.message);
    }
    updateSummary();
  }
}

function addNote(card, text) {
  const note = document.createElement("p");
  note.className = "warning";
  note.textContent = text;
  $(".status", card).after(note);
}

async function poll(job) {
  const started = Date.now();
  for (;;) {
    let body;
    try {
      const response = await fetch(`/api/jobs/${job.id}`);
      body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
    } catch (error) {
      job.state = "failed";
      setStatus(job.card, "failed", error.message);
      break;
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    if (body.state === "queued") {
      setStatus(job.card, "queued", `waiting: ${body.position} photo${body.position === 1 ? "" : "s"} ahead (${seconds} s)`);
    } else if (body.state === "running") {
      setStatus(job.card, "running", `working… (${seconds} s)`);
    } else {
      job.state = body.state;
      if (body.state === "failed") setStatus(job.card, "failed", body.error);
      else show(job, body.result);
      break;
    }
    updateSummary();
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  updateSummary();
}

function show(job, result) {
  const card = job.card;
  const n = result.faces.length;
  const done = job.action === "anonymize" ? `${n} face${n === 1 ? "" : "s"} anonymized` : result.message || "recovered";
  setStatus(card, "done", done);
  if (result.message) $(".status", card).classList.add("bad");
  for (const warning of result.warnings) addNote(card, warning);
  $(".before", card).src = `/api/jobs/${job.id}/before.jpg`;
  $(".after", card).src = `/api/jobs/${job.id}/after.jpg`;
  const svg = $(".boxes", card);
  svg.setAttribute("viewBox", `0 0 ${result.width} ${result.height}`);
  const list = $(".faces", card);
  result.faces.forEach((face, i) => {
    const item = document.createElement("li");
    item.className = face.status.replace(" ", "-");
    item.textContent = `face ${i + 1}: ${STATUS_TEXT[face.status] || face.status}` + (face.detail ? ` (${face.detail})` : "");
    list.append(item);
    if (!face.box) return;
    const [x0, y0, x1, y1] = face.box;
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 }).forEach(([k, v]) => rect.setAttribute(k, v));
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    label.setAttribute("x", x0);
    label.setAttribute("y", Math.max(y0 - 6, 14));
    label.setAttribute("font-size", Math.max(14, result.width / 60));
    label.textContent = String(i + 1);
    svg.append(rect, label);
  });
  $(".compare", card).hidden = false;
  if (result.download_name) {
    const link = $(".download", card);
    link.href = `/api/jobs/${job.id}/download`;
    link.download = result.download_name;
    link.textContent = `Download ${result.download_name}`;
    link.hidden = false;
    job.downloadName = result.download_name;
  }
}

function updateSummary() {
  const mine = jobs.filter((j) => j.action === action);
  const finished = mine.filter((j) => j.state === "done" || j.state === "failed");
  $("#progress").max = Math.max(mine.length, 1);
  $("#progress").value = finished.length;
  $("#progress-text").textContent = `${finished.length} of ${mine.length} done`;
  const ready = mine.filter((j) => j.downloadName);
  const zip = $("#zip");
  zip.hidden = ready.length < 1;
  zip.href = `/api/zip?ids=${ready.map((j) => j.id).join(",")}`;
  zip.download = action === "anonymize" ? "g2face-anonymized.zip" : "g2face-recovered.zip";
  for (const card of document.querySelectorAll(".card")) card.hidden = card.dataset.action !== action;
}

async function clearResults() {
  const finished = jobs.filter((j) => j.state === "done" || j.state === "failed");
  for (const job of finished) {
    if (job.id) await fetch(`/api/jobs/${job.id}`, { method: "DELETE", headers: HEADERS });
    job.card.remove();
    jobs.splice(jobs.indexOf(job), 1);
  }
  updateSummary();
}

const drop = $("#drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  choose(event.dataTransfer.files);
});
$("#files").addEventListener("change", (event) => choose(event.target.files));
for (const tab of document.querySelectorAll("nav [role=tab]")) {
  tab.addEventListener("click", () => selectTab(tab.dataset.action));
}
$("#form").addEventListener("submit", start);
$("#clear").addEventListener("click", clearResults);
loadConfig();
