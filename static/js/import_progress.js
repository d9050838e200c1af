// Polls the import job until it ends and moves the progress bar.
const root = document.getElementById("import-job");
const field = (name) => root.querySelector(`[data-field="${name}"]`);

function render(progress) {
  const fraction = progress.status === "done" ? 1 : progress.fraction;
  field("fill").style.width = `${Math.round(fraction * 100)}%`;
  root.querySelector("[role=progressbar]").setAttribute("aria-valuenow", progress.done_records);
  field("status").textContent = progress.status;
  field("done").textContent = progress.done_records;
  field("traces").textContent = progress.n_traces;
  field("steps").textContent = progress.n_steps;
  field("samples").textContent = progress.n_samples;
  field("message").textContent = progress.message;
  const list = field("problems");
  list.replaceChildren(...progress.problems.map((p) => {
    const item = document.createElement("li");
    item.textContent = `line ${p.line ?? "-"}: ${p.message}`;
    return item;
  }));
}

async function poll(progress) {
  render(progress);
  if (progress.status === "done" || progress.status === "failed") return;
  await new Promise((resolve) => setTimeout(resolve, 700));
  try {
    const response = await fetch(`/api/imports/${progress.id}/`, { credentials: "same-origin" });
    if (response.ok) return poll(await response.json());
  } catch (error) {
    // the server restarted or the network blinked: keep the last figures and try again
  }
  setTimeout(() => poll(progress), 2000);
}

poll(JSON.parse(document.getElementById("import-progress").textContent));
