// Live refresh for the watcher dashboard: no framework, no build step.
// [data-live-job]   a job: polls its JSON every second and redraws it in place until it ends.
// [data-live-queue] an app's queue: polls live.json; a new, started or finished job, or a
//                   pause or a freeze starting or ending, reloads the page (unless the user is typing), a new phase is shown in place.
// [data-scroll-cue] a table that may be wider than the screen: more-left / more-right say which
//                   side has more to scroll to (the stylesheet draws the fade and the hint).
"use strict";

const FINAL = ["succeeded", "failed", "superseded", "cancelled", "awaiting promotion"];

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  if (response.status === 401) {
    banner("Your session ended: log in again to see live updates.");
    return null;
  }
  return response.ok ? response.json() : undefined;
}

function banner(text) {
  if (document.querySelector(".flash.live-stale")) return;
  const p = document.createElement("p");
  p.className = "flash warn live-stale";
  p.setAttribute("role", "status");
  p.textContent = text;
  document.querySelector("main").prepend(p);
}

function badge(state) {
  const span = document.createElement("span");
  span.className = "badge s-" + (state || "none").toLowerCase().replace(/ /g, "-");
  span.dataset.state = state || "";
  span.textContent = state || "-";
  return span;
}

function seconds(value) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(1) + " s";
}

function shown(value) {
  if (value === null || value === undefined || value === "") return "-";
  return typeof value === "object" ? JSON.stringify(value, null, 2) : String(value);
}

// Every [data-field=NAME] of the page shows the job's NAME, whatever fields the record has.
function fill(job) {
  for (const [name, value] of Object.entries(job)) {
    for (const el of document.querySelectorAll(`[data-field="${name}"]`)) {
      if (name === "status" && el.dataset.format !== "raw") el.replaceChildren(badge(value));
      else if (el.dataset.format === "seconds") el.textContent = seconds(value);
      else if (el.dataset.format === "raw") el.textContent = shown(value);
      else {
        el.textContent = value === null || value === undefined ? "-" : String(value);
        if (el.hasAttribute("hidden") || el.tagName === "P") el.hidden = !value;
      }
    }
  }
  for (const el of document.querySelectorAll("[data-show-while]")) el.hidden = el.dataset.showWhile !== job.status;
}

function drawPhases(list, phases, current) {
  const items = phases.map(([name, took]) => {
    const li = document.createElement("li");
    const label = document.createElement("span");
    const time = document.createElement("span");
    label.textContent = name;
    time.className = "muted";
    time.textContent = took === null ? "in progress" : seconds(took);
    li.className = name === current && took === null ? "current" : "done";
    li.append(label, " ", time);
    return li;
  });
  list.replaceChildren(...items);
}

function liveJob(el) {
  const list = el.querySelector("[data-phases]");
  const seen = [];   // [phase, seconds it took or null while current], as watched from here
  let since = null;
  async function tick() {
    const job = await getJSON(el.dataset.liveJob);
    if (job === null) return;
    if (job) {
      fill(job);
      if (job.status === "running") {
        const phase = job.phase || "starting";
        if (!seen.length || seen[seen.length - 1][0] !== phase) {
          if (seen.length) seen[seen.length - 1][1] = (Date.now() - since) / 1000;
          seen.push([phase, null]);
          since = Date.now();
        }
        drawPhases(list, seen, phase);
      }
      if (FINAL.includes(job.status)) {
        const recorded = Object.entries(job.phases || {});
        if (recorded.length) drawPhases(list, recorded, null);
        el.dataset.final = "yes";
        return;
      }
    }
    setTimeout(tick, 1000);
  }
  tick();
}

function typing() {
  const active = document.activeElement;
  if (active && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName)) return true;
  return [...document.querySelectorAll("input[type=text], input[type=password]")].some((i) => i.value);
}

function liveQueue(el) {
  let base = null;
  const every = Number(el.dataset.interval || 2000);
  async function tick() {
    const data = await getJSON(el.dataset.liveQueue);
    if (data === null) return;
    if (data) {
      const sig = JSON.stringify([!!data.paused, !!data.frozen, data.running.map((j) => j.id), data.waiting.map((j) => j.id),
                                  data.last && data.last.id]);
      if (base === null) base = sig;
      if (sig !== base) {
        if (!typing()) return location.reload();
        return banner("The queue changed: reload the page to see it.");
      }
      for (const job of data.running) {
        for (const phase of el.querySelectorAll(`[data-job-phase="${job.id}"]`)) phase.textContent = job.phase || "starting";
      }
    }
    setTimeout(tick, every);
  }
  tick();
}

function scrollCue(el) {
  const wrap = el.querySelector(".table-wrap");
  function mark() {
    const rest = wrap.scrollWidth - wrap.clientWidth - wrap.scrollLeft;
    el.classList.toggle("more-left", wrap.scrollLeft > 1);
    el.classList.toggle("more-right", rest > 1);
  }
  wrap.addEventListener("scroll", mark, {passive: true});
  window.addEventListener("resize", mark);
  mark();
}

document.querySelectorAll("[data-scroll-cue]").forEach(scrollCue);
document.querySelectorAll("[data-live-job]").forEach((el) => { if (!el.dataset.final) liveJob(el); });
document.querySelectorAll("[data-live-queue]").forEach(liveQueue);
