// The outbox shared by the labelling pages (label_page.js, trace_page.js): nothing pressed is
// lost. Every write waits here until the server confirms it (2xx), one request at a time, in
// order, so two saves of one item never race; a new write of an item whose write has not
// left yet replaces it (the latest state wins; both callers get the answer). No answer, a
// 5xx, 408, 425 or 429: the same write again after 0.5, 1, 2, 4, 8, 8 … s (± 20 %, or
// Retry-After), at once when the browser is online again. A 4xx is not retried: the caller
// gets {ok: false, status, message}. docs/labelling.md, "Never lose a keystroke".

export function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.split("=")[1]);
  return document.querySelector("[name=csrfmiddlewaretoken]")?.value ?? "";
}

const retryable = (status) => status === 408 || status === 425 || status === 429 || status >= 500;

// `urlOf(entry)` and `methodOf(entry)` read an entry's address when it is sent (a merged entry
// may have changed it); `onSettled(entry, result)` runs once per confirmed or refused write,
// `onChange()` whenever what waits changes (to say so on the page).
export function createOutbox({ urlOf, methodOf, onSettled, onChange }) {
  const entries = [];
  let pumping = false;
  let failure = ""; // why the head of the outbox is waiting, said plainly on the page
  let retryAt = 0;
  let wakeUp = null;

  function sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  window.addEventListener("online", () => wakeUp?.());

  function request(entry, { keepalive = false } = {}) {
    return fetch(urlOf(entry), {
      method: methodOf(entry),
      credentials: "same-origin",
      keepalive,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: entry.body === null ? null : JSON.stringify(entry.body),
    });
  }

  async function send(entry) {
    const response = await request(entry);
    if (response.ok) return { ok: true, data: await response.json() };
    const answer = await response.json().catch(() => ({}));
    if (retryable(response.status)) {
      const seconds = Number(response.headers.get("Retry-After"));
      const why =
        response.status === 503 ? "the server is unavailable for a moment" : `the server answered ${response.status}`;
      const error = new Error(answer.message || why);
      error.why = why;
      error.retryAfter = Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 30) * 1000 : 0;
      throw error;
    }
    return { ok: false, status: response.status, message: answer.message || response.statusText };
  }

  async function pump() {
    if (pumping) return;
    pumping = true;
    let attempt = 0;
    try {
      while (entries.length) {
        const entry = entries[0];
        entry.sending = true;
        let result;
        try {
          result = await send(entry);
        } catch (error) {
          // No answer (offline, the server restarting) or a 5xx: the same write again, later.
          entry.sending = false;
          attempt += 1;
          const backoff = Math.min(8000, 500 * 2 ** (attempt - 1)) * (0.8 + Math.random() * 0.4);
          const wait = Math.max(error.retryAfter || 0, backoff);
          failure = error.why || (navigator.onLine ? "no answer from the server" : "no connection");
          retryAt = Date.now() + wait;
          onChange();
          await sleep(wait);
          continue;
        }
        attempt = 0;
        failure = "";
        entries.shift();
        onSettled(entry, result);
        for (const resolve of entry.waiters) resolve(result);
        onChange();
      }
    } finally {
      pumping = false;
      wakeUp = null;
    }
  }

  // `fields`: {key, body, snapshot, next?, …} — anything else the caller reads back in
  // urlOf / onSettled. Resolves to the server's answer once it came.
  function enqueue(fields) {
    return new Promise((resolve) => {
      const waiting = entries.find((e) => e.key === fields.key && !e.sending);
      if (waiting) {
        waiting.body = fields.body;
        waiting.snapshot = fields.snapshot;
        waiting.next = fields.next ?? waiting.next;
        waiting.waiters.push(resolve);
      } else {
        entries.push({ ...fields, waiters: [resolve], sending: false });
      }
      onChange();
      pump();
    });
  }

  // Resolves once everything waiting has been confirmed.
  async function drained() {
    while (entries.length) {
      await new Promise((resolve) => entries[entries.length - 1].waiters.push(resolve));
    }
  }

  // The page goes away anyway: one last try of what is waiting (idempotent, so harmless).
  function sendOnHide() {
    for (const entry of entries) {
      if (!entry.sending) request(entry, { keepalive: true }).catch(() => {});
    }
  }

  // "Saving… N changes waiting", or why not and when the next try is, in plain words.
  let syncTimer = null;
  function describe(syncEl) {
    clearTimeout(syncTimer);
    const waiting = entries.length;
    syncEl.classList.toggle("error", Boolean(failure));
    if (!waiting) {
      syncEl.textContent = "";
      syncEl.hidden = true;
      return;
    }
    syncEl.hidden = false;
    const what = waiting === 1 ? "1 change" : `${waiting} changes`;
    if (!failure) {
      syncEl.textContent = `Saving… ${what} waiting for the server.`;
      return;
    }
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    syncEl.textContent =
      `Not saved yet: ${failure}. ${what} kept on this page and sent automatically ` +
      `(next try in ${seconds} s). Please keep this page open.`;
    syncTimer = setTimeout(() => describe(syncEl), 1000);
  }

  return {
    enqueue,
    drained,
    sendOnHide,
    describe,
    get length() {
      return entries.length;
    },
    has: (predicate) => entries.some(predicate),
  };
}
