// The labelling page: keyboard shortcuts, autosave, time on task, navigation, overview, submit.
// Page data arrives through json_script (no inline script); writes go to the JSON API with
// the CSRF header. Every save is a PUT of the item's whole state, so repeating one is harmless.
// "Save & next" on a step is one request: the label PUT answers with the next item too, and
// the page shows it in place (history.pushState keeps the address and back button right).
let data = JSON.parse(document.getElementById("item-data").textContent);
const app = document.getElementById("label-app");
const kind = app.dataset.kind;
const $ = (selector) => app.querySelector(selector);
const $$ = (selector) => [...app.querySelectorAll(selector)];
const statusEl = $("#status");
const comment = $("#comment");

const itemState = () => ({
  verdict: data.label?.verdict ?? "",
  error_category: data.label?.error_category ?? "",
  probe_guess: data.label?.probe_guess ?? "",
  answers: { ...(data.rating?.answers ?? {}) },
  comment: (kind === "trace" ? data.rating?.comment : data.label?.comment) ?? "",
});
let state = itemState();
let saved = JSON.stringify(state);
let hadLabel = Boolean(data.label || data.rating);
let revising = hadLabel; // labelled before this visit: "save & next" goes to the next position
let done = data.done;
let currentLikert = 0;

// --- time on task: visible time only, added to what earlier visits counted ---------------
let baseElapsed = (kind === "trace" ? data.rating?.elapsed_ms : data.label?.elapsed_ms) ?? 0;
let visibleSince = document.visibilityState === "visible" ? performance.now() : null;
let visibleTotal = 0;
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") visibleSince = performance.now();
  else if (visibleSince !== null) {
    visibleTotal += performance.now() - visibleSince;
    visibleSince = null;
    flush();
  }
});
const elapsed = () =>
  Math.round(baseElapsed + visibleTotal + (visibleSince === null ? 0 : performance.now() - visibleSince));

// --- rendering ----------------------------------------------------------------------------
function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function renderProgress() {
  const fill = document.getElementById("progress-fill");
  fill.style.width = `${Math.round((100 * done) / data.total)}%`;
  fill.parentElement.setAttribute("aria-valuenow", done);
  document.getElementById("done-text").textContent = `${done} done`;
  const box = document.getElementById("submit-box");
  box.hidden = data.locked || done !== data.total;
}

function render() {
  if (kind === "step") {
    for (const button of $$(".verdict")) {
      button.setAttribute("aria-checked", String(button.dataset.verdict === state.verdict));
    }
    const categories = $("#category-box");
    if (categories) {
      categories.hidden = state.verdict !== "error";
      for (const input of categories.querySelectorAll("input")) {
        input.checked = input.value === state.error_category;
      }
    }
    const probe = $("#probe-box");
    if (probe) {
      probe.hidden = !state.verdict;
      for (const input of probe.querySelectorAll("input")) {
        input.checked = input.value === state.probe_guess;
      }
    }
  } else {
    $$(".likert").forEach((fieldset, index) => {
      fieldset.classList.toggle("current", index === currentLikert);
      for (const input of fieldset.querySelectorAll("input")) {
        input.checked = Number(input.value) === state.answers[fieldset.dataset.key];
      }
    });
  }
  renderProgress();
}

// --- saving ---------------------------------------------------------------------------------
function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.split("=")[1]);
  return document.querySelector("[name=csrfmiddlewaretoken]")?.value ?? "";
}

function problem() {
  if (kind === "trace") {
    const missing = data.likert_items.filter((i) => !(i.key in state.answers));
    return missing.length ? `Answer: ${missing.map((i) => i.label).join("; ")}` : "";
  }
  if (!state.verdict) return "Choose correct, error or abstain.";
  if (state.verdict === "error" && data.error_categories.length && !state.error_category) {
    return "Choose the kind of error.";
  }
  return "";
}

function body() {
  if (kind === "trace") {
    return { answers: state.answers, comment: state.comment, elapsed_ms: elapsed() };
  }
  return {
    verdict: state.verdict,
    error_category: state.verdict === "error" ? state.error_category : "",
    probe_guess: state.probe_guess,
    comment: state.comment,
    elapsed_ms: elapsed(),
  };
}

const saveUrl = () => data.urls.api + (kind === "trace" ? "rating/" : "label/");
let inflight = null;

// Resolves to false when not saved, else true — or, with `next`, the save's answer (which
// holds the item to show next).
async function save({ keepalive = false, next = null } = {}) {
  if (data.locked || problem()) return false;
  const snapshot = JSON.stringify(state);
  if (inflight) await inflight.catch(() => {});
  setStatus("Saving…");
  inflight = fetch(saveUrl() + (next ? `?next=${next}` : ""), {
    method: "PUT",
    credentials: "same-origin",
    keepalive,
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body()),
  });
  try {
    const response = await inflight;
    if (!response.ok) {
      const error = await response.json().catch(() => ({ message: response.statusText }));
      setStatus(`Not saved: ${error.message}`, true);
      return false;
    }
    saved = snapshot;
    if (!hadLabel) {
      hadLabel = true;
      done += 1;
    }
    setStatus("Saved ✓");
    render();
    return next ? await response.json() : true;
  } catch {
    setStatus("Not saved: no connection. Your choice is kept on this page; try again.", true);
    return false;
  } finally {
    inflight = null;
  }
}

const dirty = () => JSON.stringify(state) !== saved;
function flush() {
  if (dirty() && !problem()) save({ keepalive: true });
}
window.addEventListener("pagehide", flush);

let commentTimer = null;
comment.value = state.comment;
comment.addEventListener("input", () => {
  state.comment = comment.value;
  clearTimeout(commentTimer);
  commentTimer = setTimeout(() => { if (dirty()) save(); }, 800);
});

// --- choosing -------------------------------------------------------------------------------
function chooseVerdict(verdict) {
  if (data.locked) return;
  state.verdict = verdict;
  if (verdict !== "error") state.error_category = "";
  render();
  if (verdict === "error" && data.error_categories.length) {
    const box = $("#category-box");
    (box.querySelector("input:checked") ?? box.querySelector("input")).focus();
    if (!state.error_category) setStatus("Choose the kind of error (arrow keys), then Enter.");
  }
  if (!problem()) save();
}

for (const button of $$(".verdict")) {
  button.addEventListener("click", () => chooseVerdict(button.dataset.verdict));
}
$("#category-box")?.addEventListener("change", (event) => {
  state.error_category = event.target.value;
  render();
  save();
});
$("#probe-box")?.addEventListener("change", (event) => {
  state.probe_guess = event.target.value;
  save();
});
$$(".likert").forEach((fieldset, index) => {
  fieldset.addEventListener("change", (event) => {
    state.answers[fieldset.dataset.key] = Number(event.target.value);
    currentLikert = Math.min(index + 1, data.likert_items.length - 1);
    render();
    if (!problem()) save();
  });
});

function rateCurrent(value) {
  const item = data.likert_items[currentLikert];
  if (!item || value < item.min || value > item.max || data.locked) return;
  state.answers[item.key] = value;
  currentLikert = Math.min(currentLikert + 1, data.likert_items.length - 1);
  render();
  if (!problem()) save();
}

// --- navigation -----------------------------------------------------------------------------
const pageUrl = (position) => `${data.urls.page}${position}/`;

async function go(position) {
  if (position < 1 || position > data.total) return;
  if (dirty() && !problem()) {
    if (!(await save())) return;
  }
  window.location.assign(pageUrl(position));
}

// Show the item a save answered with, in place: what a page load of it would show.
function show(item) {
  clearTimeout(commentTimer);
  const position = item.position;
  data = { ...item, urls: { ...data.urls, api: data.urls.api.replace(/\d+\/$/, `${position}/`) } };
  state = itemState();
  saved = JSON.stringify(state);
  hadLabel = revising = Boolean(data.label);
  done = data.done;
  baseElapsed = data.label?.elapsed_ms ?? 0;
  visibleTotal = 0;
  visibleSince = document.visibilityState === "visible" ? performance.now() : null;

  document.title = document.title.replace(/^Item \d+ of \d+/, `Item ${position} of ${data.total}`);
  document.getElementById("position-text").textContent = `Item ${position} of ${data.total}`;
  $("#prev-button").disabled = position === 1;
  $("#next-button").disabled = position === data.total;
  const question = $(".question");
  const title = question.querySelector("#question-title");
  const stem = document.createElement("p");
  stem.className = "stem";
  stem.textContent = data.question;
  const parts = [title, stem];
  if (data.options.length) {
    const list = document.createElement("ol");
    list.className = "options";
    for (const option of data.options) {
      const li = document.createElement("li");
      const key = document.createElement("span");
      key.className = "option-key";
      key.textContent = option.key;
      li.append(key, ` ${option.text}`);
      list.append(li);
    }
    parts.push(list);
  }
  if (data.final_answer) {
    const hint = document.createElement("p");
    hint.className = "hint";
    const strong = document.createElement("strong");
    strong.textContent = data.final_answer;
    hint.append("Final answer given: ", strong);
    parts.push(hint);
  }
  question.replaceChildren(...parts);
  const context = $("details.context");
  context.hidden = data.context.length === 0;
  // No counts unless the audit shows step numbers (the trace's length is a side channel).
  document.getElementById("context-count").textContent = data.step_number
    ? ` (${data.step_number - 1})`
    : "";
  document.getElementById("context-cut").hidden = !data.context_cut;
  document.getElementById("context-steps").replaceChildren(
    ...data.context.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
  document.getElementById("step-title").textContent =
    `Step to judge${data.step_number ? ` (step ${data.step_number})` : ""}`;
  document.getElementById("step-text").textContent = data.step;
  comment.value = state.comment;
  setStatus("");
  render();
  document.activeElement?.blur();
  window.scrollTo(0, 0);
  history.pushState({ position }, "", pageUrl(position));
}
// Back and forward through items shown in place: load the page of the address shown.
window.addEventListener("popstate", () => window.location.reload());

let advancing = false;
async function saveAndNext() {
  if (kind === "step" && !data.locked) {
    const why = problem();
    if (why) {
      setStatus(why, true);
      return;
    }
    if (advancing) return; // a second Enter while the first is on its way
    advancing = true;
    try {
      // One request: the save (harmless when nothing changed) answers with the next item.
      const answer = await save({ next: revising ? "following" : "unlabelled" });
      if (!answer) return;
      if (answer.next) show(answer.next);
      else document.getElementById("submit-button")?.focus();
    } finally {
      advancing = false;
    }
    return;
  }
  if (!data.locked) {
    const why = problem();
    if (why) {
      setStatus(why, true);
      return;
    }
    if (dirty() || !hadLabel || elapsed() > baseElapsed + 1000) {
      if (!(await save())) return;
    }
  }
  if (data.position < data.total) {
    window.location.assign(pageUrl(data.position + 1));
    return;
  }
  const overview = await loadOverview();
  const open = overview?.items.find((i) => !i.done);
  if (open) window.location.assign(pageUrl(open.position));
  else document.getElementById("submit-button")?.focus();
}

async function loadOverview() {
  const response = await fetch(data.urls.assignment_api, { credentials: "same-origin" });
  return response.ok ? response.json() : null;
}

async function openOverview() {
  const dialog = document.getElementById("overview-dialog");
  const list = document.getElementById("overview-list");
  const overview = await loadOverview();
  if (!overview) return;
  list.replaceChildren(
    ...overview.items.map((entry) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = pageUrl(entry.position);
      link.textContent = String(entry.position);
      link.className = `cell ${entry.done ? "done" : ""} ${entry.verdict}`;
      link.setAttribute(
        "aria-label",
        `Item ${entry.position}: ${entry.done ? entry.verdict || "done" : "not done"}`,
      );
      if (entry.position === data.position) link.setAttribute("aria-current", "page");
      link.addEventListener("click", (event) => {
        event.preventDefault();
        go(entry.position);
      });
      li.append(link);
      return li;
    }),
  );
  dialog.showModal();
  list.querySelector("[aria-current]")?.focus();
}

const openDialog = (id) => document.getElementById(id)?.showModal();

$("#prev-button").addEventListener("click", () => go(data.position - 1));
$("#next-button").addEventListener("click", () => go(data.position + 1));
$("#save-next-button").addEventListener("click", saveAndNext);
$("#overview-button").addEventListener("click", openOverview);
$("#guidelines-button")?.addEventListener("click", () => openDialog("guidelines-dialog"));
$("#help-button").addEventListener("click", () => openDialog("help-dialog"));
document.getElementById("submit-button")?.addEventListener("click", async () => {
  if (dirty()) await save();
  const response = await fetch(data.urls.submit_api, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken() },
  });
  if (response.ok) window.location.assign(data.urls.list);
  else setStatus(`Not submitted: ${(await response.json()).message}`, true);
});

// --- keyboard -------------------------------------------------------------------------------
const VERDICT_KEYS = { 1: "correct", c: "correct", 2: "error", e: "error", 3: "abstain", a: "abstain" };

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.altKey || event.metaKey) return;
  if (document.querySelector("dialog[open]")) return; // Esc closes it natively
  const target = event.target;
  const typing = target instanceof HTMLTextAreaElement || target instanceof HTMLInputElement && target.type === "text";
  if (typing) {
    if (event.key === "Enter" && event.ctrlKey) {
      event.preventDefault();
      state.comment = comment.value;
      saveAndNext();
    } else if (event.key === "Escape") {
      target.blur();
    }
    return;
  }
  if (event.ctrlKey) return;
  const onControl = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
  const onRadio = target instanceof HTMLInputElement && target.type === "radio";
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (key === "Enter") {
    if (onControl) return; // the focused button or link does its own thing
    event.preventDefault();
    saveAndNext();
  } else if (kind === "step" && key in VERDICT_KEYS) {
    event.preventDefault();
    chooseVerdict(VERDICT_KEYS[key]);
  } else if (kind === "trace" && /^[0-9]$/.test(key)) {
    event.preventDefault();
    rateCurrent(Number(key));
  } else if ((key === "ArrowLeft" && !onRadio) || key === "p") {
    event.preventDefault();
    go(data.position - 1);
  } else if ((key === "ArrowRight" && !onRadio) || key === "n") {
    event.preventDefault();
    go(data.position + 1);
  } else if (key === "m") {
    event.preventDefault();
    comment.focus();
  } else if (key === "o") {
    event.preventDefault();
    openOverview();
  } else if (key === "g") {
    event.preventDefault();
    openDialog("guidelines-dialog");
  } else if (key === "?") {
    event.preventDefault();
    openDialog("help-dialog");
  } else if (key === "x") {
    const details = $("details.context");
    if (details) details.open = !details.open;
  }
});

render();
