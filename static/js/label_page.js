// The labelling page: keyboard shortcuts, autosave, time on task, navigation, overview, submit.
// Page data arrives through json_script (no inline script); writes go to the JSON API with
// the CSRF header. Every save is a PUT of the item's whole state, so repeating one is harmless.
// "Save & next" on a step is one request: the label PUT answers with the next item too, and
// the page shows it in place (history.pushState keeps the address and back button right).
//
// Nothing pressed is lost: every write waits in the outbox until the server confirms it, one
// request at a time (two saves of one item never race), retried with back-off on a network
// failure or a 5xx; keys pressed while the page waits for the next item are kept and replayed
// on it. What the page shows as done or "Saved ✓" is what the server answered.
import { createOutbox, csrfToken } from "./outbox.js";

let data = JSON.parse(document.getElementById("item-data").textContent);
const app = document.getElementById("label-app");
const kind = app.dataset.kind;
const $ = (selector) => app.querySelector(selector);
const $$ = (selector) => [...app.querySelectorAll(selector)];
const statusEl = $("#status");
const syncEl = $("#sync");
const comment = $("#comment");
const flagBox = $("#flag");
const flagNote = $("#flag-note");

const itemState = () => ({
  verdict: data.label?.verdict ?? "",
  error_category: data.label?.error_category ?? "",
  probe_guess: data.label?.probe_guess ?? "",
  flagged: data.label?.flagged ?? false,
  flag_note: data.label?.flag_note ?? "",
  answers: { ...(data.rating?.answers ?? {}) },
  comment: (kind === "trace" ? data.rating?.comment : data.label?.comment) ?? "",
});
let state = itemState();
let queued = JSON.stringify(state); // the current item's state last handed to the outbox
let confirmed = queued; // … and last confirmed by the server
let hadLabel = Boolean(data.label || data.rating);
let revising = hadLabel; // labelled before this visit: "save & next" goes to the next position
let done = data.done;
let skippedCount = data.n_skipped ?? 0;
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
  document.getElementById("done-text").textContent =
    `${done} done${skippedCount ? `, ${skippedCount} skipped` : ""}`;
  const box = document.getElementById("submit-box");
  box.hidden = data.locked || done + skippedCount < data.total;
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
    if (flagBox) {
      flagBox.checked = state.flagged;
      flagNote.hidden = !state.flagged;
      $("#flag-note-label").hidden = !state.flagged;
      if (flagNote.value !== state.flag_note) flagNote.value = state.flag_note;
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

// --- the outbox (static/js/outbox.js) --------------------------------------------------------
// Entries: {key, kind: "label" | "rating" | "skip", position, api, body, snapshot, next}.
const entryUrl = (entry) =>
  entry.api + (entry.kind === "skip" ? "skip/" : `${entry.kind}/`) + (entry.next ? `?next=${entry.next}` : "");
const outbox = createOutbox({
  urlOf: entryUrl,
  methodOf: (entry) => (entry.kind === "skip" ? "POST" : "PUT"),
  onSettled: settled,
  onChange: () => renderSync(),
});

function enqueue({ kind: entryKind, body = null, next = null }) {
  return outbox.enqueue({
    key: `${entryKind}:${data.position}`,
    kind: entryKind,
    position: data.position,
    api: data.urls.api,
    body,
    snapshot: JSON.stringify(state),
    next,
  });
}

// The server's answer to one write: the shown counts and "Saved ✓" follow it, never a guess.
function settled(entry, result) {
  const current = entry.position === data.position && entry.api === data.urls.api;
  if (!result.ok) {
    if (current) setStatus(`Not saved: ${result.message}`, true);
    else setStatus(`Item ${entry.position} not saved: ${result.message}`, true);
    if (current && entry.kind !== "skip") queued = confirmed; // a later save will try again
    return;
  }
  if (typeof result.data.done === "number") done = result.data.done;
  if (!current || entry.kind === "skip") {
    renderProgress();
    return;
  }
  confirmed = entry.snapshot;
  hadLabel = true;
  // Only this entry has left: is a newer save of the item still waiting behind it?
  const waiting = outbox.has((e) => e !== entry && e.key === entry.key);
  if (!waiting && JSON.stringify(state) === confirmed) setStatus("Saved ✓");
  renderProgress();
}

function renderSync() {
  outbox.describe(syncEl);
}

// Leaving with anything not confirmed: the browser asks first.
window.addEventListener("beforeunload", (event) => {
  if (outbox.length || dirty()) {
    event.preventDefault();
    event.returnValue = "";
  }
});
// The page goes away anyway: one last try of what is waiting (idempotent, so harmless twice).
window.addEventListener("pagehide", () => {
  flush();
  outbox.sendOnHide();
});

// --- saving ---------------------------------------------------------------------------------
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
    flagged: state.flagged,
    flag_note: state.flagged ? state.flag_note : "",
    elapsed_ms: elapsed(),
  };
}

// Resolves to false when not saved, else the server's answer (with `next`, it holds the
// item to show next). Waits as long as the server takes: a failed attempt is retried.
async function save({ next = null } = {}) {
  if (data.locked || problem()) return false;
  queued = JSON.stringify(state);
  if (outbox.length === 0) setStatus("Saving…");
  const result = await enqueue({ kind: kind === "trace" ? "rating" : "label", body: body(), next });
  return result.ok ? result.data : false;
}

const dirty = () => !data.locked && JSON.stringify(state) !== queued;
function flush() {
  if (dirty() && !problem()) save();
}

let commentTimer = null;
comment.value = state.comment;
comment.addEventListener("input", () => {
  state.comment = comment.value;
  clearTimeout(commentTimer);
  commentTimer = setTimeout(() => { if (dirty()) save(); }, 800);
});
flagNote?.addEventListener("input", () => {
  state.flag_note = flagNote.value;
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
    if (!state.error_category) setStatus("Choose the kind of error (its number or the arrow keys), then Enter.");
  } else if (document.activeElement?.closest("#category-box")) {
    document.activeElement.blur();
  }
  if (!problem()) save();
}

function chooseCategory(value) {
  if (data.locked) return;
  state.error_category = value;
  render();
  $(`#category-box input[value="${CSS.escape(value)}"]`)?.focus();
  save();
}

function toggleFlag() {
  if (data.locked || !flagBox) return;
  state.flagged = !state.flagged;
  render();
  if (state.flagged) flagNote.focus();
  else if (document.activeElement === flagNote) flagNote.blur();
  if (problem()) setStatus(state.flagged ? "Flagged: choose a verdict to save it." : "");
  else save();
}

for (const button of $$(".verdict")) {
  button.addEventListener("click", () => chooseVerdict(button.dataset.verdict));
}
$("#category-box")?.addEventListener("change", (event) => chooseCategory(event.target.value));
$("#probe-box")?.addEventListener("change", (event) => {
  state.probe_guess = event.target.value;
  if (!problem()) save();
});
flagBox?.addEventListener("change", () => {
  if (flagBox.checked !== state.flagged) toggleFlag();
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

// Arrow keys on a group of radios, done here rather than by the browser so that a key
// kept while the page was busy does the same when replayed.
function moveInGroup(input, step) {
  const inputs = [...input.closest("fieldset").querySelectorAll("input[type=radio]")];
  const next = inputs[(inputs.indexOf(input) + step + inputs.length) % inputs.length];
  next.focus();
  if (next.closest("#category-box")) chooseCategory(next.value);
  else if (next.closest("#probe-box")) {
    state.probe_guess = next.value;
    render();
    if (!problem()) save();
  } else {
    next.checked = true;
    next.dispatchEvent(new Event("change", { bubbles: true }));
  }
}

// --- navigation -----------------------------------------------------------------------------
const pageUrl = (position) => `${data.urls.page}${position}/`;

// While the page waits for the server before it can go on, keys are kept, not acted on.
let busy = false;
async function whileBusy(work) {
  busy = true;
  document.activeElement?.blur?.();
  try {
    await work();
  } finally {
    busy = false;
    replayKeys();
  }
}

function go(position) {
  if (position < 1 || position > data.total || busy) return;
  whileBusy(async () => {
    if (dirty() && !problem()) {
      if (!(await save())) return;
    }
    await drained();
    keptKeys.length = 0; // a new page load starts afresh
    window.location.assign(pageUrl(position));
    busy = true; // until the page goes
    await new Promise(() => {});
  });
}

// Resolves once everything waiting has been confirmed.
const drained = () => outbox.drained();

// Show the item a save answered with, in place: what a page load of it would show.
function show(item) {
  clearTimeout(commentTimer);
  const position = item.position;
  data = { ...item, urls: { ...data.urls, api: data.urls.api.replace(/\d+\/$/, `${position}/`) } };
  state = itemState();
  queued = confirmed = JSON.stringify(state);
  hadLabel = revising = Boolean(data.label);
  done = data.done;
  skippedCount = data.n_skipped ?? 0;
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
  setStatus(data.skipped ? "You skipped this item earlier: label it now, or skip it again (s)." : "");
  render();
  document.activeElement?.blur();
  window.scrollTo(0, 0);
  scrollContextToEnd();
  history.pushState({ position }, "", pageUrl(position));
}
// The preceding steps scroll on their own, showing the last ones (next to the step to judge).
function scrollContextToEnd() {
  const context = $("details.context");
  if (context) context.scrollTop = context.scrollHeight;
}

// Back and forward through items shown in place: load the page of the address shown.
window.addEventListener("popstate", () => window.location.reload());

// Nothing left to show: the counts from the server, and the submit box (never focused:
// Enter must not reach the submission).
async function allDealtWith() {
  const overview = await loadOverview();
  if (overview) {
    done = overview.labelled;
    skippedCount = overview.skipped;
  }
  renderProgress();
  if (!data.locked && done + skippedCount >= data.total) {
    setStatus(
      skippedCount
        ? `Every item is labelled or skipped (${skippedCount} skipped). Submit when you are ready.`
        : "Every item is labelled. Submit when you are ready.",
    );
  }
}

function saveAndNext() {
  if (busy) {
    keptKeys.push({ key: "Enter", ctrlKey: false }); // its button, pressed while busy
    return;
  }
  if (data.locked) {
    if (data.position < data.total) go(data.position + 1);
    return;
  }
  const why = problem();
  if (why) {
    setStatus(why, true);
    return;
  }
  if (kind === "step") {
    whileBusy(async () => {
      // One request: the save (harmless when nothing changed) answers with the next item.
      const answer = await save({ next: revising ? "following" : "unlabelled" });
      if (!answer) return;
      if (answer.next) show(answer.next);
      else await allDealtWith();
    });
    return;
  }
  whileBusy(async () => {
    if (!(await save())) return;
    await drained();
    if (data.position < data.total) {
      keptKeys.length = 0;
      window.location.assign(pageUrl(data.position + 1));
      await new Promise(() => {});
    }
    const overview = await loadOverview();
    const open = overview?.items.find((i) => !i.done);
    if (open) {
      keptKeys.length = 0;
      window.location.assign(pageUrl(open.position));
      await new Promise(() => {});
    }
    await allDealtWith();
  });
}

function skip() {
  if (busy) {
    keptKeys.push({ key: "s", ctrlKey: false });
    return;
  }
  if (data.locked || kind !== "step") return;
  if (hadLabel || (state.verdict && !problem())) {
    // Labelled: a skip would not unlabel it; go on as Enter does.
    saveAndNext();
    return;
  }
  whileBusy(async () => {
    state = itemState(); // a half-made choice (error without its kind) is dropped
    queued = confirmed = JSON.stringify(state);
    render();
    setStatus("Skipping…");
    const result = await enqueue({ kind: "skip", next: "unlabelled" });
    if (!result.ok) return;
    if (result.data.next) show(result.data.next);
    else await allDealtWith();
  });
}

async function loadOverview() {
  try {
    const response = await fetch(data.urls.assignment_api, { credentials: "same-origin" });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

function cellName(entry) {
  if (entry.done) return `${entry.verdict || "done"}${entry.flagged ? ", flagged" : ""}`;
  return entry.skipped ? "skipped" : "not done";
}

async function openOverview() {
  const dialog = document.getElementById("overview-dialog");
  const list = document.getElementById("overview-list");
  const overview = await loadOverview();
  if (!overview) {
    setStatus("The overview needs the server, which is not answering just now.", true);
    return;
  }
  list.replaceChildren(
    ...overview.items.map((entry) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = pageUrl(entry.position);
      link.textContent = String(entry.position);
      link.className = ["cell", entry.done ? "done" : "", entry.verdict, entry.skipped ? "skipped" : "", entry.flagged ? "flagged" : ""]
        .filter(Boolean)
        .join(" ");
      link.setAttribute("aria-label", `Item ${entry.position}: ${cellName(entry)}`);
      if (entry.position === data.position) link.setAttribute("aria-current", "page");
      link.addEventListener("click", (event) => {
        event.preventDefault();
        dialog.close();
        go(entry.position);
      });
      li.append(link);
      return li;
    }),
  );
  dialog.showModal();
  list.querySelector("[aria-current]")?.focus();
}

// Arrow keys move through the overview's grid (left/right one, up/down one row).
document.getElementById("overview-list").addEventListener("keydown", (event) => {
  const cells = [...event.currentTarget.querySelectorAll("a.cell")];
  const index = cells.indexOf(document.activeElement);
  if (index < 0) return;
  const top = cells[0].offsetTop;
  const perRow = Math.max(1, cells.findIndex((c) => c.offsetTop !== top));
  const columns = cells.every((c) => c.offsetTop === top) ? cells.length : perRow;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns, Home: -index, End: cells.length - 1 - index }[event.key];
  if (step === undefined) return;
  event.preventDefault();
  cells[Math.min(cells.length - 1, Math.max(0, index + step))].focus();
});

const openDialog = (id) => document.getElementById(id)?.showModal();

// Submitting asks first, with the counts from the server; "Keep labelling" has the focus,
// so no Enter (the save key) can submit.
async function openSubmit() {
  await drained();
  const overview = await loadOverview();
  if (!overview) {
    setStatus("Submitting needs the server, which is not answering just now.", true);
    return;
  }
  const counts = document.getElementById("submit-counts");
  const parts = [
    `${overview.labelled} labelled`,
    `${overview.skipped} skipped (left unlabelled)`,
    `${overview.flagged} flagged for review`,
  ];
  counts.textContent = `${parts.join(", ")} of ${overview.total} items.`;
  document.getElementById("submit-dialog").showModal();
  document.getElementById("submit-cancel").focus();
}

async function submitNow() {
  const confirmButton = document.getElementById("submit-confirm");
  confirmButton.disabled = true;
  try {
    const response = await fetch(data.urls.submit_api, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() },
    });
    if (response.ok) {
      window.location.assign(data.urls.list);
      return;
    }
    const answer = await response.json().catch(() => ({ message: response.statusText }));
    document.getElementById("submit-dialog").close();
    setStatus(`Not submitted: ${answer.message}`, true);
  } catch {
    document.getElementById("submit-dialog").close();
    setStatus("Not submitted: no connection. Try again in a moment.", true);
  } finally {
    confirmButton.disabled = false;
  }
}

$("#prev-button").addEventListener("click", () => go(data.position - 1));
$("#next-button").addEventListener("click", () => go(data.position + 1));
$("#save-next-button").addEventListener("click", saveAndNext);
$("#skip-button")?.addEventListener("click", skip);
$("#overview-button").addEventListener("click", openOverview);
$("#guidelines-button")?.addEventListener("click", () => openDialog("guidelines-dialog"));
$("#help-button").addEventListener("click", () => openDialog("help-dialog"));
document.getElementById("submit-button")?.addEventListener("click", openSubmit);
document.getElementById("submit-confirm")?.addEventListener("click", submitNow);
document.getElementById("submit-cancel")?.addEventListener("click", () =>
  document.getElementById("submit-dialog").close(),
);

// --- keyboard -------------------------------------------------------------------------------
const VERDICT_KEYS = { 1: "correct", c: "correct", 2: "error", e: "error", 3: "abstain", a: "abstain" };
const keptKeys = [];

function isTyping(target) {
  return target instanceof HTMLTextAreaElement || (target instanceof HTMLInputElement && target.type === "text");
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.altKey || event.metaKey) return;
  if (document.querySelector("dialog[open]")) return; // Esc closes it natively
  const key = { key: event.key, ctrlKey: event.ctrlKey, shiftKey: event.shiftKey };
  if (busy) {
    // Waiting for the server to go on: keep the key for the item that comes next. A button
    // or link the user moved to on purpose still takes its own Enter or Space.
    if (["Shift", "Control", "Alt", "Meta", "Tab"].includes(event.key)) return;
    const onControl = event.target instanceof HTMLButtonElement || event.target instanceof HTMLAnchorElement;
    if (onControl && (event.key === "Enter" || event.key === " ")) return;
    event.preventDefault();
    keptKeys.push(key);
    return;
  }
  if (handleKey(key, event.target)) event.preventDefault();
});

function replayKeys() {
  while (keptKeys.length && !busy && !document.querySelector("dialog[open]")) {
    const key = keptKeys.shift();
    // A kept key acts on the item, never on a button or link focused since (a kept Enter
    // must not press "Sign out" or "Submit"). Moved to one on purpose while waiting, the
    // user has gone on: the kept keys are dropped, so replaying them cannot take the focus
    // away from that button just before its own Enter.
    const focused = document.activeElement;
    const onControl = focused instanceof HTMLButtonElement || focused instanceof HTMLAnchorElement;
    if (onControl) {
      keptKeys.length = 0;
      return;
    }
    const target = focused || document.body;
    if (isTyping(target) && key.key.length === 1 && !key.ctrlKey) {
      target.setRangeText(key.key, target.selectionStart, target.selectionEnd, "end");
      target.dispatchEvent(new Event("input", { bubbles: true }));
      continue;
    }
    handleKey(key, target);
  }
}

// Acts on one key; true when it did something (the browser's own handling is then skipped).
function handleKey({ key: rawKey, ctrlKey }, target) {
  if (isTyping(target)) {
    if (rawKey === "Enter" && (ctrlKey || target === flagNote)) {
      state.comment = comment.value;
      saveAndNext();
      return true;
    }
    if (rawKey === "Escape") {
      target.blur();
      return true;
    }
    return false;
  }
  if (ctrlKey) return false;
  const onControl = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
  const onRadio = target instanceof HTMLInputElement && target.type === "radio";
  const inCategories = onRadio && target.closest("#category-box");
  const key = rawKey.length === 1 ? rawKey.toLowerCase() : rawKey;
  if (key === "Enter") {
    if (onControl) return false; // the focused button or link does its own thing
    saveAndNext();
  } else if (onRadio && ["ArrowDown", "ArrowRight", "ArrowUp", "ArrowLeft"].includes(key)) {
    moveInGroup(target, key === "ArrowDown" || key === "ArrowRight" ? 1 : -1);
  } else if (inCategories && /^[1-9]$/.test(key)) {
    // After "2": a digit picks the kind of error by its number.
    const inputs = [...target.closest("fieldset").querySelectorAll("input")];
    const input = inputs[Number(key) - 1];
    if (input) chooseCategory(input.value);
  } else if (kind === "step" && key in VERDICT_KEYS) {
    chooseVerdict(VERDICT_KEYS[key]);
  } else if (kind === "trace" && /^[0-9]$/.test(key)) {
    rateCurrent(Number(key));
  } else if (key === "ArrowLeft" || key === "p") {
    go(data.position - 1);
  } else if (key === "ArrowRight" || key === "n") {
    go(data.position + 1);
  } else if (key === "s" && kind === "step") {
    skip();
  } else if (key === "f" && kind === "step") {
    toggleFlag();
  } else if (key === "m") {
    comment.focus();
  } else if (key === "o") {
    openOverview();
  } else if (key === "g") {
    openDialog("guidelines-dialog");
  } else if (key === "?") {
    openDialog("help-dialog");
  } else if (key === "x") {
    const details = $("details.context");
    if (details) details.open = !details.open;
  } else {
    return false;
  }
  return true;
}

render();
renderSync();
scrollContextToEnd();
if (data.skipped) setStatus("You skipped this item earlier: label it now, or skip it again (s).");
