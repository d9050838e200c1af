"""axe-core in the browser tests: ``assert_accessible(page)`` fails on any WCAG 2.1 A/AA
violation of the page as it is now (tests/support/vendor/README.md)."""

from pathlib import Path

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

_RUN = """async (tags) => {
  const result = await axe.run(document, { runOnly: { type: "tag", values: tags } });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def axe_violations(page) -> list[dict]:
    # page.evaluate runs over the DevTools protocol: no <script> element, no CSP exception.
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate(_RUN, TAGS)


def assert_accessible(page) -> None:
    violations = axe_violations(page)
    assert violations == [], "\n".join(
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['nodes'])}" for v in violations
    )
