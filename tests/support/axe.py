"""axe-core (npm, ``node_modules/axe-core``) in the browser tests: accessibility checks on a page.

    from axe import assert_no_serious_axe_violations
    assert_no_serious_axe_violations(page)            # the whole page as it is now
    assert_no_serious_axe_violations(page, "#overview-dialog")   # one part (an open dialog)

The pages run under a strict Content-Security-Policy (no inline scripts), so axe is not added
as a <script> tag: its source is evaluated through the DevTools protocol (``page.evaluate``),
which CSP does not govern, and runs in the page's own world.
"""

import json
import os
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
AXE_PATH = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


@cache
def _axe_source() -> str:
    if not AXE_PATH.exists():
        # A skip on the embedded defaults (no npm here), a failure in CI.
        reason = f"{AXE_PATH} is missing: run `npm ci` in the project folder"
        if os.environ.get("STEPAUDIT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required service missing: {reason}")
        pytest.skip(reason)
    return AXE_PATH.read_text()


def axe_violations(page, context: str | None = None) -> list[dict]:
    """axe's violations on ``page`` (or the part matched by the CSS selector ``context``)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    return page.evaluate(
        """async (context) => {
            const result = await window.axe.run(context ?? document, {
                resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                id: v.id,
                impact: v.impact,
                help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
            }));
        }""",
        context,
    )


def assert_no_serious_axe_violations(page, context: str | None = None) -> list[dict]:
    """Fail on any serious or critical axe violation; return the lesser ones (for a note)."""
    violations = axe_violations(page, context)
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, f"axe on {page.url}: " + json.dumps(blocking, indent=1)
    return violations
