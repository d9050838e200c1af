// Judge runs page: polls the JSON API for every run that has not ended and moves its bar.
const data = JSON.parse(document.getElementById("judge-runs-data").textContent);
const ENDED = new Set(["done", "failed", "cancelled"]);

function render(card, p) {
  const field = (name) => card.querySelector(`[data-field="${name}"]`);
  field("fill").style.width = `${Math.round(p.fraction * 100)}%`;
  card.querySelector("[role=progressbar]").setAttribute("aria-valuenow", p.done);
  field("status").textContent = p.status;
  field("done").textContent = p.done;
  field("failed").textContent = p.failed;
  field("remaining").textContent = p.remaining;
  field("invalid").textContent = p.invalid;
  field("rate").textContent = p.steps_per_s.toFixed(1);
  field("tokens").textContent = p.prompt_tokens + p.completion_tokens;
  field("prompt-per-step").textContent = p.prompt_tokens_per_step;
  field("cached-per-step").textContent = p.cached_tokens_per_step;
  field("eta").textContent = p.eta_s === null ? "–" : `${Math.round(p.eta_s)} s`;
  field("message").textContent = p.message;
  field("warning").textContent = p.warning || "";
  for (const [action, allowed] of [["pause", p.can_pause], ["resume", p.can_resume], ["cancel", p.can_cancel]]) {
    card.querySelector(`[data-action="${action}"]`).hidden = !allowed;
  }
}

// Verdicts per condition, as the API labels them (blind codes until the audit is unblinded).
function renderConditions(card, rows) {
  const body = card.querySelector("table tbody");
  if (!body || !rows) return;
  body.replaceChildren(...rows.map((c) => {
    const tr = document.createElement("tr");
    const rate = c.error_rate === null ? "–" : c.error_rate.toFixed(3);
    for (const value of [c.condition, c.judged, c.error, c.abstain, c.invalid, rate]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
}

async function poll(card, p) {
  render(card, p);
  renderConditions(card, p.conditions);
  if (ENDED.has(p.status) || p.status === "paused") return;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  try {
    const response = await fetch(`${data.api}${p.id}/`, { credentials: "same-origin" });
    if (response.ok) return poll(card, await response.json());
  } catch (error) {
    // the server restarted or the network blinked: try again a little later
  }
  setTimeout(() => poll(card, p), 3000);
}

for (const p of data.runs) {
  const card = document.querySelector(`.run[data-run-id="${p.id}"]`);
  if (card) poll(card, p);
}
