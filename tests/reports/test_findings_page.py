"""The page, the stand-alone HTML and the JSON open with the same findings."""

import html
import re

from django.urls import reverse


def _text(body: str) -> str:
    """Visible text of an HTML body, whitespace collapsed."""
    text = re.sub(r"<[^>]+>", " ", body)
    return " ".join(html.unescape(text).split())


def test_page_html_and_json_open_with_the_same_findings(
    client, api_client, expert_labels, researcher
):
    # given: two clinicians and the reference on the demo audit
    client.force_login(researcher)
    api_client.force_authenticate(researcher)
    params = {"resamples": 50}
    # when
    report = api_client.get(reverse("reports-api:report", args=[expert_labels.slug]), params).json()
    page = client.get(reverse("reports:audit", args=[expert_labels.slug]), params)
    standalone = client.get(reverse("reports:audit-html", args=[expert_labels.slug]), params)
    # then: the JSON's first key is the findings, each with a rule-given verdict
    assert next(iter(report)) == "findings"
    items = report["findings"]["items"]
    assert items
    assert {i["verdict"] for i in items} <= {
        "reproduces",
        "consistent_with",
        "does_not_reproduce",
        "inconclusive",
    }
    for body in (page.content.decode(), standalone.content.decode()):
        text = _text(body)
        # the page says what the JSON says, word for word, before settings and tables
        for item in items:
            assert " ".join(item["sentence"].split()) in text
        first_finding = text.index(" ".join(items[0]["sentence"].split()))
        assert first_finding < text.index("Step error rates")
        assert "rank the 3 conditions in the same order" not in text
        # each finding links to its table, which exists on the page
        assert f'href="#t-{items[0]["table"]}"' in body
        assert f'id="t-{items[0]["table"]}"' in body
        # the rules are printed in the methods
        assert "Findings (findings-v2)" in text
    page_text = _text(page.content.decode())
    assert page_text.index("Findings") < page_text.index("Settings")
