import pytest

from annotations.services.normalise import NORMALISER_VERSION, RAW_VERSION, blind_text


@pytest.mark.parametrize(
    ("raw", "blinded"),
    [
        ("Okay, so the dose is low.", "The dose is low."),
        ("Alright, hmm, wait, so it is B.", "It is B."),
        ("Let me think. The ECG shows ST elevation.", "The ECG shows ST elevation."),
        ("**Therefore** the answer is *B*.", "Therefore the answer is B."),
        ("## Step summary\nIt is `B`.", "Step summary It is B."),
        ("3. The ferritin is low.", "The ferritin is low."),
        ("- The ferritin is low.", "The ferritin is low."),
        ("Step 4: The ferritin is low.", "The ferritin is low."),
        ("“Low” ferritin — iron… deficiency", '"Low" ferritin - iron... deficiency'),
        ("  many   spaces\n\nand lines  ", "Many spaces and lines"),
        ("<think>The dose</think>", "The dose"),
        ("snake_case_name stays", "Snake_case_name stays"),
        ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),
        ("So.", "So."),
    ],
    ids=[
        "okay-so",
        "stacked-fillers",
        "let-me-think",
        "bold-italic",
        "heading-code",
        "number",
        "bullet",
        "step-n",
        "quotes-dashes",
        "whitespace",
        "think-tags",
        "underscores-in-words",
        "arithmetic-stars",
        "filler-only",
    ],
)
def test_normaliser_rules(raw, blinded):
    # when
    text, version = blind_text(raw, normalise=True)
    # then
    assert text == blinded
    assert version == NORMALISER_VERSION


def test_normaliser_is_deterministic_and_idempotent():
    raw = "Okay, so **first**, the *ferritin* is low — see 1. above…"
    once, _ = blind_text(raw, normalise=True)
    assert blind_text(raw, normalise=True)[0] == once
    assert blind_text(once, normalise=True)[0] == once


def test_off_keeps_the_raw_text_trimmed():
    assert blind_text("  Okay, so **B**.  ", normalise=False) == ("Okay, so **B**.", RAW_VERSION)
