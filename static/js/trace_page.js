// The trace page (trace modes): one whole trace, keyboard first.
// "trace": every step is labelled in order; a verdict key labels the highlighted step and
// moves down to the next, and each step is saved as it is labelled (a label PUT per step,
// the same API and label + revision model as the step page).
// "first_error": the expert marks the first wrong step, or "no error"; one PUT of the mark
// writes the step labels it implies on the server.
// Every write goes through the shared outbox (static/js/outbox.js): queued until the server
// confirms it, one at a time, retried with back-off; the page shows the server's answers.
import { createOutbox, csrfToken } from "./outbox.js";

const data = JSON.parse(document.getElementById("trace-data").textContent);
const app = document.getElementById("trace-app");
const $ = (selector) => app.querySelector(selector);
const $$ = (selector) => [...app.querySelectorAll(selector)];
const mode = data.mode;
const rows = $$(".trace-step");
const statusEl = $("#status");
const syncEl = $("#sync");
const categoryBox = $("#category-box");

// Per step: the label the server confirmed, and the one shown (may be waiting).
const confirmedLabels = data.steps.map((s) => s.label);
const shownLabels = data.steps.map((s) => (s.label ? { ...s.label } : null));
let mark = data.mark ? { ...data.mark } : null; // {first_error, error_category, cannot_assess}
let tracesDone = data.traces_done;
const completeAtLoad = isComplete(confirmedLabels);
let current = firstOpen();
let choosingCategory = null; // the step (0-based) whose kind of error is being chosen

// Time on task: since the page loaded, or since the last step was labelled.
let lastMark = performance.now();
function timeSinceLast() {
  const now = performance.now();
  const spent = Math.round(now - lastMark);
  lastMark = now;
  return spent;
}

function isComplete(labels) {
  return labels.every((label) => label !== null);
}

function firstOpen() {
  if (mode === "first_error") {
    if (!mark) return 0;
    return mark.first_error === null ? data.steps.length : mark.first_error - 1;
  }
  const open = shownLabels.findIndex((label) => label === null);
  return open === -1 ? 0 : open;
}

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

// --- rendering ----------------------------------------------------------------------------
function render() {
  rows.forEach((row, index) => {
    const isCurrent = index === current;
    row.classList.toggle("current", isCurrent);
    if (isCurrent) row.setAttribute("aria-current", "step");
    else row.removeAttribute("aria-current");
    const state = row.querySelector(".step-state");
    if (mode === "first_error") {
      // "Can't assess": no step and no "no error" is marked.
      const at = mark && !mark.cannot_assess ? (mark.first_error === null ? 0 : mark.first_error) : null;
      const number = Number(row.dataset.index);
      row.querySelector(".mark-button").setAttribute("aria-pressed", String(at !== null && number === at));
      row.classList.toggle("marked", at !== null && number === at && number > 0);
      row.classList.toggle("after-mark", at !== null && at > 0 && number > at);
      if (number === 0) {
        state.textContent = at === 0 ? "Marked: no error in this trace." : "";
      } else if (mark?.cannot_assess) {
        state.textContent = "Not assessed";
      } else if (at === null) {
        state.textContent = "";
      } else if (at === 0 || number < at) {
        state.textContent = "Correct (before the first wrong step)";
      } else if (number === at) {
        state.textContent = `First wrong step${mark.error_category ? `: ${mark.error_category}` : ""}`;
      } else {
        state.textContent = "After the first wrong step (not labelled)";
      }
      return;
    }
    const label = shownLabels[index];
    for (const button of row.querySelectorAll(".verdict")) {
      button.setAttribute("aria-pressed", String(label?.verdict === button.dataset.verdict));
    }
    const waiting = outbox.has((e) => e.position === data.steps[index].position);
    const saved = label && !waiting && JSON.stringify(label) === JSON.stringify(confirmedLabels[index]);
    state.textContent = !label
      ? ""
      : `${label.verdict}${label.error_category ? `: ${label.error_category}` : ""} — ${saved ? "saved ✓" : "saving…"}`;
  });
  const cannot = document.getElementById("cannot-assess-button");
  if (cannot) {
    cannot.setAttribute("aria-pressed", String(Boolean(mark?.cannot_assess)));
    document.getElementById("cannot-assess-state").textContent = mark?.cannot_assess
      ? "Marked: you can't assess this trace (every step abstains)."
      : "";
  }
  if (categoryBox) {
    categoryBox.hidden = choosingCategory === null;
    const chosen =
      mode === "first_error" ? mark?.error_category ?? "" : shownLabels[choosingCategory ?? -1]?.error_category ?? "";
    for (const input of categoryBox.querySelectorAll("input")) input.checked = input.value === chosen;
  }
  renderProgress();
}

function renderProgress() {
  const fill = document.getElementById("progress-fill");
  fill.style.width = `${Math.round((100 * tracesDone) / data.n_traces)}%`;
  fill.parentElement.setAttribute("aria-valuenow", tracesDone);
  document.getElementById("done-text").textContent = `${tracesDone} of ${data.n_traces} traces done`;
  $("#submit-box").hidden = data.locked || tracesDone < data.n_traces;
}

function scrollToCurrent() {
  rows[current]?.scrollIntoView({ block: "nearest" });
}

// --- the outbox ---------------------------------------------------------------------------
const outbox = createOutbox({
  urlOf: (entry) => entry.url,
  methodOf: () => "PUT",
  onSettled: settled,
  onChange: () => outbox.describe(syncEl),
});

function settled(entry, result) {
  if (!result.ok) {
    setStatus(`Not saved: ${result.message}`, true);
    if (entry.kind === "mark") {
      mark = data.mark ? { ...data.mark } : null;
    } else {
      shownLabels[entry.index] = confirmedLabels[entry.index] ? { ...confirmedLabels[entry.index] } : null;
    }
    render();
    return;
  }
  if (entry.kind === "mark") {
    // The server's trace: its mark and the step labels it wrote.
    const answer = result.data;
    data.mark = answer.mark;
    tracesDone = answer.traces_done;
    if (!outbox.has((e) => e.kind === "mark")) {
      mark = answer.mark ? { ...answer.mark } : null;
      setStatus("Saved ✓");
    }
  } else {
    confirmedLabels[entry.index] = JSON.parse(entry.snapshot);
    const complete = isComplete(confirmedLabels);
    tracesDone = data.traces_done - (completeAtLoad ? 1 : 0) + (complete ? 1 : 0);
    if (!outbox.length) setStatus("Saved ✓");
  }
  render();
}

// --- trace mode: a label per step ---------------------------------------------------------
function labelStep(index, verdict, category = "") {
  choosingCategory = null;
  if (data.locked) return;
  const step = data.steps[index];
  const before = step.label ?? {};
  const label = { verdict, error_category: verdict === "error" ? category : "" };
  shownLabels[index] = label;
  const spent = timeSinceLast();
  const elapsed = (before.elapsed_ms ?? 0) + spent;
  step.label = { ...before, elapsed_ms: elapsed };
  setStatus("Saving…");
  outbox.enqueue({
    key: `label:${step.position}`,
    kind: "label",
    index,
    position: step.position,
    url: `${data.urls.item_api}${step.position}/label/`,
    // A PUT carries the item's whole state: keep what this page does not edit.
    body: {
      verdict,
      error_category: label.error_category,
      comment: before.comment ?? "",
      flagged: before.flagged ?? false,
      flag_note: before.flag_note ?? "",
      elapsed_ms: elapsed,
    },
    snapshot: JSON.stringify(label),
  });
  if (index < data.steps.length - 1) current = index + 1;
  render();
  scrollToCurrent();
}

function verdictKey(verdict) {
  if (verdict === "error" && categoryBox) {
    choosingCategory = current;
    render();
    setStatus("Choose the kind of error: its number (Esc cancels).");
    return;
  }
  labelStep(current, verdict);
}

// --- first-error mode: one mark per trace -------------------------------------------------
function markAt(number, category = "", cannotAssess = false) {
  // number: 1-based step, 0 = no error (or, with cannotAssess, no mark at all)
  if (data.locked) return;
  mark = {
    ...(mark ?? {}),
    first_error: number === 0 ? null : number,
    error_category: number === 0 ? "" : category,
    cannot_assess: cannotAssess,
  };
  const elapsed = (data.mark?.elapsed_ms ?? 0) + timeSinceLast();
  setStatus("Saving…");
  outbox.enqueue({
    key: "mark",
    kind: "mark",
    url: data.urls.first_error_api,
    body: {
      first_error: mark.first_error,
      error_category: mark.error_category,
      cannot_assess: cannotAssess,
      comment: "",
      elapsed_ms: elapsed,
    },
    snapshot: JSON.stringify(mark),
  });
  choosingCategory = number > 0 && categoryBox ? number - 1 : null;
  current = number === 0 ? data.steps.length : number - 1;
  render();
}

function cannotAssess() {
  markAt(0, "", true);
}

function chooseCategory(category) {
  const index = choosingCategory;
  choosingCategory = null;
  if (mode === "first_error") markAt(index + 1, category);
  else labelStep(index, "error", category);
}

// --- navigation ---------------------------------------------------------------------------
let leaving = false;
async function goToTrace(number) {
  if (number < 1 || number > data.n_traces || leaving) return;
  leaving = true;
  if (outbox.length) setStatus("Saving before moving on…");
  await outbox.drained();
  window.location.assign(`${data.urls.page}${number}/`);
}

function move(delta) {
  const last = mode === "first_error" ? data.steps.length : data.steps.length - 1;
  current = Math.max(0, Math.min(last, current + delta));
  if (choosingCategory !== null && mode === "trace") choosingCategory = null;
  render();
  scrollToCurrent();
}

window.addEventListener("beforeunload", (event) => {
  if (outbox.length) {
    event.preventDefault();
    event.returnValue = "";
  }
});
window.addEventListener("pagehide", () => outbox.sendOnHide());

// --- submit -------------------------------------------------------------------------------
function openSubmit() {
  document.getElementById("submit-counts").textContent =
    `${tracesDone} of ${data.n_traces} traces done.`;
  document.getElementById("submit-dialog").showModal();
  document.getElementById("submit-cancel").focus();
}

async function submitNow() {
  const confirmButton = document.getElementById("submit-confirm");
  confirmButton.disabled = true;
  try {
    await outbox.drained();
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

// --- keys and clicks ----------------------------------------------------------------------
const VERDICT_KEYS = { 1: "correct", c: "correct", 2: "error", e: "error", 3: "abstain", a: "abstain" };

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector("dialog[open]")) return; // the dialog's own keys (Esc closes)
  const target = event.target;
  const onControl = target instanceof HTMLButtonElement || target instanceof HTMLInputElement;
  const key = event.key;
  if ((key === "Enter" || key === " ") && onControl) return; // the focused control's own action
  if (choosingCategory !== null) {
    const n = Number(key);
    const inputs = categoryBox ? [...categoryBox.querySelectorAll("input")] : [];
    if (Number.isInteger(n) && n >= 1 && n <= inputs.length) {
      event.preventDefault();
      chooseCategory(inputs[n - 1].value);
      return;
    }
    if (key === "Escape") {
      event.preventDefault();
      const index = choosingCategory;
      choosingCategory = null;
      if (mode === "trace") setStatus("");
      else if (index !== null && index < data.steps.length - 1) current = index;
      render();
      return;
    }
  }
  let handled = true;
  if (key === "ArrowDown" || key === "j") move(1);
  else if (key === "ArrowUp" || key === "k") move(-1);
  else if (key === "ArrowRight" || key === "n") goToTrace(data.number + 1);
  else if (key === "ArrowLeft" || key === "p") goToTrace(data.number - 1);
  else if (key === "g" && document.getElementById("guidelines-dialog")) document.getElementById("guidelines-dialog").showModal();
  else if (key === "?") document.getElementById("help-dialog").showModal();
  else if (data.locked) handled = false;
  else if (mode === "trace" && key in VERDICT_KEYS) verdictKey(VERDICT_KEYS[key]);
  else if (mode === "trace" && key === "Enter") goToTrace(data.number + 1);
  else if (mode === "first_error" && (key === "2" || key === "e" || key === "Enter")) {
    markAt(current === data.steps.length ? 0 : current + 1);
  } else if (mode === "first_error" && key === "0") markAt(0);
  else if (mode === "first_error" && (key === "a" || key === "3")) cannotAssess();
  else handled = false;
  if (handled) event.preventDefault();
});

rows.forEach((row, index) => {
  for (const button of row.querySelectorAll(".verdict")) {
    button.addEventListener("click", () => {
      current = index;
      verdictKey(button.dataset.verdict);
    });
  }
  row.querySelector(".mark-button")?.addEventListener("click", (event) => {
    markAt(Number(event.currentTarget.dataset.mark));
  });
});
categoryBox?.addEventListener("change", (event) => {
  if (choosingCategory !== null && event.target.name === "error_category") chooseCategory(event.target.value);
});
document.getElementById("cannot-assess-button")?.addEventListener("click", cannotAssess);
$("#prev-button").addEventListener("click", () => goToTrace(data.number - 1));
$("#next-button").addEventListener("click", () => goToTrace(data.number + 1));
$("#help-button").addEventListener("click", () => document.getElementById("help-dialog").showModal());
document.getElementById("guidelines-button")?.addEventListener("click", () =>
  document.getElementById("guidelines-dialog").showModal(),
);
$("#submit-button").addEventListener("click", openSubmit);
document.getElementById("submit-cancel").addEventListener("click", () => document.getElementById("submit-dialog").close());
document.getElementById("submit-confirm").addEventListener("click", submitNow);

render();
scrollToCurrent();
