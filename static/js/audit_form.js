// The audit form's list settings: "Add" clones the list's row template, "Remove" drops a row.
// Without scripts the page still works: one blank row per list, and a cleared row is removed.
for (const list of document.querySelectorAll("[data-list]")) {
  const rows = list.querySelector("[data-rows]");
  const template = list.querySelector("[data-row-template]");
  const add = list.querySelector("[data-add-row]");
  // Indices only grow, so a removed row's number is never reused by a new one.
  let next = rows.querySelectorAll("[data-row]").length;

  const renumber = () => {
    rows.querySelectorAll("[data-row-number]").forEach((el, i) => { el.textContent = i + 1; });
  };
  const wire = (row) => {
    const remove = row.querySelector("[data-remove-row]");
    remove.hidden = false;
    remove.addEventListener("click", () => {
      const focusTarget = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      (focusTarget?.querySelector("input") || add).focus();
    });
  };

  rows.querySelectorAll("[data-row]").forEach(wire);
  add.hidden = false;
  add.addEventListener("click", () => {
    const fragment = template.content.cloneNode(true);
    for (const el of fragment.querySelectorAll("[id], [name], [for], [aria-describedby]")) {
      for (const attr of ["id", "name", "for", "aria-describedby"]) {
        const value = el.getAttribute(attr);
        if (value) el.setAttribute(attr, value.replaceAll("__index__", String(next)));
      }
    }
    const row = fragment.querySelector("[data-row]");
    rows.append(fragment);
    wire(row);
    renumber();
    next += 1;
    row.querySelector("input").focus();
  });
}
