"""``norm-v2``: the style normaliser for audits created after issue 11.

``norm-v1`` (annotations/services/normalise.py) left a reasoning model's house style visible: bold
that spans sentences, fillers and self-corrections in the middle of a step, LaTeX, code, emoji,
quotes and tables. A character n-gram classifier told two styled arms apart from v1's output
almost as well as from the raw text. v2 removes those cues; every rule is listed, in the order it
runs, in docs/formats.md ("Blinded text"), and each filler entry has a test
(tests/annotations/services/test_normalise_v2.py).

In the order they run (character rules first, then line rules, then fillers):

1. Tags: ``<think>``, ``<thinking>``, ``<reasoning>``, ``<answer>`` (opening or closing) → space.
2. Code fences: fence lines (```` ```lang ````, ``~~~``) are dropped.
3. LaTeX to plain text: math delimiters (``$…$``, ``$$``, ``\\(…\\)``, ``\\[…\\]``) dropped;
   ``\\boxed{x}``, ``\\text{x}`` and the other text/font commands → ``x``; ``\\frac{a}{b}`` →
   ``a/b`` (brackets round a part that is not a single term); ``\\sqrt{x}`` → ``√x``;
   ``^{2}`` → ``^2``; ``_{2}`` → ``2``; symbols to their characters (``\\times`` ×, ``\\cdot`` ·,
   ``\\pm`` ±, ``\\le`` ≤, ``\\ge`` ≥, ``\\circ``/``\\degree`` °, ``\\mu`` µ, Greek letters …);
   sizing commands (``\\left``, ``\\right``, ``\\displaystyle`` …) dropped; spacing commands →
   space; escaped characters (``\\%``, ``\\$``, ``\\_`` …) unescaped; any other ``\\command``
   loses its backslash.
4. Emphasis wherever it opens or closes, balanced or not, across sentences and lines: every
   run of ``**``/``__``/``~~`` goes unless it sits between two letters or digits (``2**3``); a
   single ``*`` or ``_`` goes when it opens a word (nothing alphanumeric before, something
   after) or closes one (something before, nothing alphanumeric after) — so ``2 * 3``,
   ``2*3`` and ``snake_case`` stay. Then every remaining backtick (inline code) goes.
5. Emoji and decorative symbols go (pictographs, dingbats such as ✓ ✔ ✗ ❌ ➡, ★ ☆ ⚠, geometric
   shapes ■ ● ▶, ⭐ ⬆, variation selectors, zero-width characters). Clinical symbols stay:
   ± ≥ ≤ ≠ ≈ ° µ % × · ÷ → ← ↑ ↓ ♀ ♂ and Greek letters.
6. As v1: curly quotes → straight, en/em dashes and the minus sign → "-", "…" → "...".
7. Tables: a block of lines that start and end with ``|`` becomes one line: separator rows
   (``|---|:--:|``) dropped, cells joined by ", ", rows by "; ".
8. Line structure (as v1, plus quotes): horizontal rules (``---``, ``***``, ``___``, ``===``),
   heading markers, ``>`` quote markers — unless the ``>`` is followed by a number, ``=`` or
   ``.`` ("> 5 mg" means "more than 5 mg") — and list markers or numbering at the start of a
   line ("1.", "2)", "Step 3:", "-", "*", "•").
9. As v1: whitespace runs (line breaks included) → one space; trimmed. A space left before
   , . ; ! ? by a removed symbol goes.
10. Fillers and self-corrections (:data:`FILLERS`) at the start of any sentence — the start of
    the step or after ". ", "! ", "? ", ": ", "; " — repeatedly, with a list marker the removal
    uncovers; the next word is capitalised when it is all lower case ("pH" stays). Most entries
    need the punctuation that makes them a filler ("Wait," "Actually," "Right,"), so "Wait for
    the culture", "Actually measured", "Right ventricle", "Well-differentiated", "So-called" and
    "Now 3 days later" are left alone. Interjections between commas ("low, hmm, …", ", wait,")
    go too. A step that is nothing but fillers blinds to the empty text. Hedges ("maybe",
    "probably", "I think") are content — the report's hedging rate counts them — and stay.

Deterministic, and idempotent: ``normalise_v2(normalise_v2(x)) == normalise_v2(x)`` (a property
test checks it on generated text).
"""

import re
from dataclasses import dataclass

NORMALISER_V2 = "norm-v2"

_TAGS = re.compile(r"</?(?:think|thinking|reasoning|answer)>", re.IGNORECASE)
_FENCE_LINE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[^`\n]*$", re.MULTILINE)
_TABLE_BLOCK = re.compile(r"(?:^[ \t]*\|[^\n]*\|[ \t]*(?:\n|$))+", re.MULTILINE)
_TABLE_SEPARATOR = re.compile(r"^[\s|:-]*-[\s|:-]*$")
_HRULE = re.compile(r"^[ \t]*(?:[-*_=][ \t]*){3,}$", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+(?![ \t]*[\d.=<>])", re.MULTILINE)

# Emphasis runs: removed unless a letter or digit stands on both sides ("2**3"). Found by a
# plain pattern and judged by a function: patterns that start with a look-behind are tried at
# every position (measured 16 µs a step against 1 µs).
_STRONG = re.compile(r"\*{2,}|_{2,}|~{2,}")
_SINGLE_STAR = re.compile(r"\*")
_SINGLE_UNDERSCORE = re.compile(r"_")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SPACES = frozenset(" \t\n\r\f\v")


def _strong_removed(match: re.Match[str]) -> str:
    text, start, end = match.string, match.start(), match.end()
    if start and end < len(text) and text[start - 1] in _ALNUM and text[end] in _ALNUM:
        return match.group()
    return ""


def _single_removed(match: re.Match[str]) -> str:
    """A lone ``*`` or ``_`` goes when it opens a word (nothing alphanumeric before it,
    something not a space after) or closes one (the mirror image)."""
    text, start, end = match.string, match.start(), match.end()
    marker = match.group()
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    opens = before not in _ALNUM and after != "" and after not in _SPACES and after != marker
    closes = before != "" and before not in _SPACES and before != marker and after not in _ALNUM
    return "" if opens or closes else marker


_DECORATIVE = re.compile(
    "["
    "\U0001f000-\U0001faff"  # emoji, pictographs, transport, flags, playing cards …
    "\u2600-\u263f\u2641\u2643-\u26ff"  # miscellaneous symbols, except ♀ (2640) and ♂ (2642)
    "\u2700-\u27bf"  # dingbats: ✓ ✔ ✗ ✘ ❌ ❗ ➡ ✳ ❤
    "\u2b00-\u2bff"  # ⬅ ⬆ ⬛ ⭐ ⭕
    "\u231a\u231b\u23e9-\u23fa"  # ⌚ ⌛ ⏩ … ⏰ ⏱
    "\u25a0-\u25ff"  # geometric shapes: ■ □ ▪ ▶ ◆ ● ○
    "\ufe0e\ufe0f\u200b-\u200d\u2060\u20e3"  # variation selectors, zero-width, keycap
    "]+"
)
_CHARACTERS = str.maketrans(
    {
        "“": '"',
        "”": '"',
        "„": '"',
        "‘": "'",
        "’": "'",
        "–": "-",
        "—": "-",
        "‒": "-",
        "―": "-",
        "−": "-",
        "‐": "-",
        "‑": "-",
    }
)
_LINE_MARKER = re.compile(
    r"^[ \t]*(?:(?:step|stage)\s*\d+\s*[:.)-]|\(?\d{1,3}[.)](?=\s)"
    r"|\(?[a-z][.)](?=\s)|[-*•+](?=\s))[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,.;!?](?:\s|$))")

# --- LaTeX ---------------------------------------------------------------------------------

_TEX_TOKEN = re.compile(r"\\([A-Za-z]+)\*?|\\(.)|([\^_])\{", re.DOTALL)
_TEX_DOLLAR_PAIR = re.compile(r"(?<![\\$\w])\$(?=[^\s$])([^$\n]*?[^\s$\\])\$(?![\w$])")
# Commands whose one braced argument is their text.
_TEX_TEXT = frozenset(
    [
        "boxed",
        "fbox",
        "text",
        "textrm",
        "textbf",
        "textit",
        "textsf",
        "texttt",
        "textnormal",
        "textup",
        "mathrm",
        "mathbf",
        "mathit",
        "mathsf",
        "mathtt",
        "mathcal",
        "mathbb",
        "mathnormal",
        "operatorname",
        "emph",
        "mbox",
        "hbox",
        "underline",
        "overline",
        "bm",
        "boldsymbol",
        "pmb",
    ]
)
_TEX_FRAC = frozenset({"frac", "dfrac", "tfrac", "cfrac"})
_TEX_DROP = frozenset(
    [
        "left",
        "right",
        "big",
        "Big",
        "bigg",
        "Bigg",
        "bigl",
        "bigr",
        "Bigl",
        "Bigr",
        "biggl",
        "biggr",
        "displaystyle",
        "textstyle",
        "scriptstyle",
        "limits",
        "nolimits",
    ]
)
_TEX_SPACE = frozenset({"quad", "qquad", "space", "enspace", "thinspace", "medspace"})
_TEX_SYMBOLS = {
    "times": "×",
    "cdot": "·",
    "div": "÷",
    "pm": "±",
    "mp": "∓",
    "le": "≤",
    "leq": "≤",
    "leqslant": "≤",
    "ge": "≥",
    "geq": "≥",
    "geqslant": "≥",
    "ne": "≠",
    "neq": "≠",
    "approx": "≈",
    "sim": "~",
    "equiv": "≡",
    "lt": "<",
    "gt": ">",
    "to": "→",
    "rightarrow": "→",
    "longrightarrow": "→",
    "leftarrow": "←",
    "uparrow": "↑",
    "downarrow": "↓",
    "Rightarrow": "⇒",
    "implies": "⇒",
    "infty": "∞",
    "circ": "°",
    "degree": "°",
    "percent": "%",
    "ldots": "...",
    "dots": "...",
    "cdots": "...",
    "mu": "µ",
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "Gamma": "Γ",
    "delta": "δ",
    "Delta": "Δ",
    "epsilon": "ε",
    "varepsilon": "ε",
    "zeta": "ζ",
    "eta": "η",
    "theta": "θ",
    "kappa": "κ",
    "lambda": "λ",
    "nu": "ν",
    "xi": "ξ",
    "pi": "π",
    "rho": "ρ",
    "sigma": "σ",
    "Sigma": "Σ",
    "tau": "τ",
    "phi": "φ",
    "varphi": "φ",
    "chi": "χ",
    "psi": "ψ",
    "omega": "ω",
    "Omega": "Ω",
}
_TEX_ORDINARY = frozenset("°%µαβγΓδΔεζηθκλνξπρσΣτφχψωΩ∞")
# Escaped characters: \% → %, spacing escapes → space, \( \) \[ \] (math delimiters) → nothing.
_TEX_ESCAPES = {
    ",": " ",
    ";": " ",
    ":": " ",
    "!": "",
    " ": " ",
    "\\": " ",
    "\n": " ",
    "(": "",
    ")": "",
    "[": " ",
    "]": " ",
}
_SINGLE_TERM = re.compile(r"-?[\w.%µ°]+")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start]`` and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def _argument(text: str, position: int) -> tuple[str, int] | None:
    while position < len(text) and text[position] == " ":
        position += 1
    group = _braced(text, position)
    if group is None:
        return None
    return _tex_plain(group[0]), group[1]


def _term(text: str) -> str:
    text = text.strip()
    return text if _SINGLE_TERM.fullmatch(text) else f"({text})"


def _tex_plain(text: str) -> str:
    out: list[str] = []
    position = 0
    while (match := _TEX_TOKEN.search(text, position)) is not None:
        out.append(text[position : match.start()])
        position = match.end()
        name, escaped, script = match.groups()
        if escaped is not None:
            out.append(_TEX_ESCAPES.get(escaped, escaped))
        elif script is not None:
            group = _argument(text, match.end() - 1)
            if group is None:
                out.append(match.group())
                continue
            inner, position = group
            if script == "_":
                out.append(inner.strip() if _SINGLE_TERM.fullmatch(inner.strip()) else inner)
            elif inner.strip() == "°":
                out.append("°")
            else:
                out.append("^" + _term(inner))
        elif name in _TEX_TEXT or name == "sqrt":
            group = _argument(text, position)
            if group is None:
                out.append("√" if name == "sqrt" else "")
                continue
            inner, position = group
            out.append("√" + _term(inner) if name == "sqrt" else inner)
        elif name in _TEX_FRAC:
            top = _argument(text, position)
            bottom = _argument(text, top[1]) if top is not None else None
            if top is None or bottom is None:
                out.append("/")
                continue
            position = bottom[1]
            out.append(f"{_term(top[0])}/{_term(bottom[0])}")
        elif name in _TEX_SYMBOLS:
            symbol = _TEX_SYMBOLS[name]
            out.append(symbol)
            if symbol in _TEX_ORDINARY:
                # TeX swallows the spaces after a control word: \mu g is "µg". Operators
                # (× ± ≤ →) keep theirs, as they are typeset with space around them.
                while position < len(text) and text[position] == " ":
                    position += 1
        elif name in _TEX_SPACE:
            out.append(" ")
        elif name not in _TEX_DROP:
            out.append(name)
    out.append(text[position:])
    return "".join(out).replace("^°", "°")


def _latex(text: str) -> str:
    if "$" in text:
        text = text.replace("$$", " ")
        text = _TEX_DOLLAR_PAIR.sub(r"\1", text)
    if "\\" in text or "{" in text:
        text = _tex_plain(text)
    return text


# --- tables --------------------------------------------------------------------------------


def _table_flat(match: re.Match[str]) -> str:
    rows = []
    for line in match.group().splitlines():
        if not line.strip() or _TABLE_SEPARATOR.match(line):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if joined := ", ".join(cell for cell in cells if cell):
            rows.append(joined)
    return "; ".join(rows) + "\n"


# --- fillers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filler:
    """One entry of the versioned filler list: a pattern matched at the start of a sentence."""

    name: str
    pattern: str  # a regular expression, case-insensitive, for the words themselves
    punctuation: bool  # True: only a filler when punctuation follows it ("Wait," not "Wait for")
    example: str  # a raw step it is removed from (tests run every example)
    blinded: str  # what the example blinds to


_PUNCT = r"(?:[,:;.!]+|[ ]+-(?=[ ]))[ ]*"
_LET_ME_VERBS = (
    r"(?:think|see|check|double[- ]?check|re-?check|verify|reconsider|re-?consider|re-?examine"
    r"|re-?evaluate|recall|re-?read|confirm|look|go through|work through|break (?:this|it) down"
    r"|figure (?:this|it) out|analy[sz]e|start|begin|try)"
)
_LET_ME_OBJECTS = (
    r"(?: (?:again|this|that|it|carefully|more carefully|once more|step by step|first"
    r"|(?:about|through|at|over) (?:this|it|that|the (?:question|options|case))"
    r"|the (?:question|options|case|calculation|math|answer|facts)))*"
)

#: The filler list of norm-v2. Append new entries in a new version (norm-v3): existing audits
#: keep the list they were imported with.
FILLERS: tuple[Filler, ...] = (
    Filler(
        "hesitation",
        r"h+m+|um+|uh+|erm+|mhm+",
        False,
        "Hmm the ECG is normal.",
        "The ECG is normal.",
    ),
    Filler(
        "okay-so",
        r"(?:okay|ok|alright|all right),? so",
        False,
        "Okay so the dose is low.",
        "The dose is low.",
    ),
    Filler(
        "okay",
        r"okay|ok|okey|alright|all right",
        True,
        "Okay, the dose is low.",
        "The dose is low.",
    ),
    Filler(
        "but-wait",
        r"(?:but|and|oh|ah|no|ok|okay),? wait",
        True,
        "The rate is high. But wait, the rhythm is regular.",
        "The rate is high. The rhythm is regular.",
    ),
    Filler(
        "wait-a-moment",
        r"wait (?:a )?(?:second|sec|minute|moment)",
        False,
        "Wait a second, the troponin is raised.",
        "The troponin is raised.",
    ),
    Filler(
        "wait",
        r"wait",
        True,
        "It is sepsis. Wait, but maybe it is cardiac?",
        "It is sepsis. But maybe it is cardiac?",
    ),
    Filler(
        "hold-on",
        r"(?:hold|hang) on(?: a (?:second|sec|minute|moment))?",
        True,
        "Hold on, the sodium is low.",
        "The sodium is low.",
    ),
    Filler(
        "on-second-thought",
        r"on (?:second|further) thoughts?|scratch that",
        True,
        "On second thought, it is viral.",
        "It is viral.",
    ),
    Filler(
        "actually",
        r"actually",
        True,
        "Actually, the potassium is normal.",
        "The potassium is normal.",
    ),
    Filler(
        "let-me",
        r"let me " + _LET_ME_VERBS + _LET_ME_OBJECTS,
        True,
        "Let me double-check: the dose is 5 mg.",
        "The dose is 5 mg.",
    ),
    Filler(
        "lets",
        r"let'?s " + _LET_ME_VERBS + _LET_ME_OBJECTS,
        True,
        "Let's see, the child is febrile.",
        "The child is febrile.",
    ),
    Filler("well", r"well", True, "Well, the lactate is raised.", "The lactate is raised."),
    Filler("right", r"right", True, "Right, the pupils are equal.", "The pupils are equal."),
    Filler("now", r"now", True, "Now, the creatinine is high.", "The creatinine is high."),
    Filler("oh", r"oh|ah|aha|ahh", True, "Oh, the film is rotated.", "The film is rotated."),
    Filler(
        "so",
        r"so(?! (?:far|that|much|many|long|few|little|as|called|to speak)\b)",
        False,
        "So the answer is B.",
        "The answer is B.",
    ),
    Filler(
        "final-answer",
        r"final answer(?! (?:is|was|would|will)\b)",
        False,
        "**Final Answer**\n\\boxed{A}",
        "A",
    ),
    Filler("answer-label", r"answer(?=:)", True, "Answer: C", "C"),
)

_FILLER_ALTERNATIVES_EACH = tuple(
    f"(?:{f.pattern}){_PUNCT}" if f.punctuation else f"(?:{f.pattern})\\b(?:{_PUNCT}|[ ]+|$)"
    for f in FILLERS
)
_FILLER_ALTERNATIVES = "|".join(_FILLER_ALTERNATIVES_EACH)
# The next word is capitalised only when it is all lower case ("pH", "eGFR" are left alone).
_NEXT = r"(?P<next>(?-i:[a-z](?=[a-z]*(?![A-Za-z0-9]))))?"
# At the start of the step, and after a sentence end. Two patterns rather than one with a
# look-behind: this one starts with a character class, which the regex engine scans for
# quickly, where a look-behind is tried at every position (measured 3x slower).
_FILLER_HEAD = re.compile(rf"(?:{_FILLER_ALTERNATIVES})+{_NEXT}", re.IGNORECASE)


def _first_chars(pattern: str) -> frozenset[str] | None:
    """The characters a match of ``pattern`` can start with; None when that is not simple to
    tell (then the filler is tried after any character). Reads the parse tree of ``re``."""
    from re import _constants as sre
    from re import _parser as parser

    def first(items) -> tuple[set[str] | None, bool]:  # (chars, may be empty)
        chars: set[str] = set()
        for op, arg in items:
            if op is sre.LITERAL:
                return chars | {chr(arg)}, False
            if op is sre.IN:
                for kind, value in arg:
                    if kind is sre.LITERAL:
                        chars.add(chr(value))
                    elif kind is sre.RANGE:
                        chars.update(chr(c) for c in range(value[0], value[1] + 1))
                    else:
                        return None, False
                return chars, False
            if op is sre.BRANCH:
                for alternative in arg[1]:
                    found, empty = first(list(alternative))
                    if found is None or empty:
                        return None, False
                    chars |= found
                return chars, False
            if op is sre.SUBPATTERN or op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
                sub, required = (arg[3], True) if op is sre.SUBPATTERN else (arg[2], arg[0] > 0)
                found, empty = first(list(sub))
                if found is None:
                    return None, False
                chars |= found
                if required and not empty:
                    return chars, False
                continue
            return None, False
        return chars, True

    found, empty = first(list(parser.parse(pattern)))
    if found is None or empty:
        return None
    return frozenset(c for ch in found for c in (ch.lower(), ch.upper()))


def _heads_by_first_char() -> dict[str, re.Pattern[str]]:
    """The start-of-step filler pattern per first character: only the fillers that can start
    with it in the first place (the regex engine tries alternatives one by one, so trying 18
    where 3 can match cost a microsecond a step); repeats may be any filler. Alternatives keep
    their order, so each pattern matches exactly what ``_FILLER_HEAD`` matches there."""
    starts = [_first_chars(f.pattern) for f in FILLERS]
    chars = set().union(*(s for s in starts if s is not None))
    if any(s is None for s in starts):
        chars |= set(map(chr, range(128)))
    patterns = {}
    for char in sorted(chars):
        alternatives = "|".join(
            alternative
            for alternative, start in zip(_FILLER_ALTERNATIVES_EACH, starts, strict=True)
            if start is None or char in start
        )
        patterns[char] = re.compile(
            rf"(?:{alternatives})(?:{_FILLER_ALTERNATIVES})*{_NEXT}", re.IGNORECASE
        )
    return patterns


_FILLER_MID = re.compile(rf"(?P<end>[.!?:;]) (?:{_FILLER_ALTERNATIVES})+{_NEXT}", re.IGNORECASE)
_INTERJECTION = re.compile(r",[ ](?:h+m+|um+|uh+|erm+|wait)(?=[,.!?;:])", re.IGNORECASE)
# The characters a list or quote marker (_LINE_MARKER, _QUOTE) can start with; a filler's are
# read off its pattern (_HEAD_BY_FIRST).
_HEAD_BY_FIRST = _heads_by_first_char()
_MARKER_FIRST = frozenset("(-*•+>sS")
_LOWER_WORD = re.compile(r"[a-z][a-z]*(?![A-Za-z0-9])")
# Characters some rule acts on: output that still holds one gets another pass (see below).
_TRIGGERS = re.compile(r"[<`~|*_#>\\${]")
# Anything beyond plain one-line ASCII prose (with "  ", checked apart: a pattern that
# alternates with a two-character string is scanned slowly, measured 1.6 µs against 0.4).
_MARKUP = re.compile(r"[<`~|*_#>\\${\n\r\t\f\v]")


def _head_removed(match: re.Match[str]) -> str:
    following = match.group("next")
    return following.upper() if following else ""


def _mid_removed(match: re.Match[str]) -> str:
    following = match.group("next")
    return match.group("end") + " " + (following.upper() if following else "")


def _capitalised(text: str) -> str:
    if text[:1].islower() and _LOWER_WORD.match(text):
        return text[0].upper() + text[1:]
    return text


def normalise_v2(text: str) -> str:
    """The norm-v2 blinded text of one step (or final answer)."""
    if _MARKUP.search(text) is None and "  " not in text and text.isascii():
        # Plain one-line prose (most steps): only the start-of-text and filler rules apply,
        # and removing words cannot create markup, so one pass is final.
        if text[:1] in ("-", "="):
            return _one_pass(text)
        return _fillers_removed(text.strip())
    out = _one_pass(text)
    # A removal can uncover what another rule acts on ("Okay, | a | b |", "**# Title"):
    # while the text still holds a character some rule acts on, pass again until nothing
    # changes. Passes never lengthen the text.
    for _ in range(8):
        if not (_TRIGGERS.search(out) or out[:1] in ("-", "=")):
            break
        again = _one_pass(out)
        if again == out:
            break
        out = again
    return out


def _one_pass(text: str) -> str:
    out = text
    if _MARKUP.search(out) is None and "  " not in out and out.isascii():
        # Plain one-line prose: only the start-of-text and filler rules apply.
        if out[:1] in ("-", "*", "_", "="):
            out = _HRULE.sub(" ", out)
        return _fillers_removed(out.strip())
    # Each rule runs only when its trigger character is present. Character rules first, then
    # line rules, so that a removed character cannot uncover a line rule's marker after it
    # has run.
    if "<" in out:
        out = _TAGS.sub(" ", out)
    if "`" in out or "~" in out:
        out = _FENCE_LINE.sub("", out)
    if "\\" in out or "$" in out or "{" in out:
        out = _latex(out)
    if "*" in out or "_" in out or "~" in out:
        if "**" in out or "__" in out or "~~" in out:
            out = _STRONG.sub(_strong_removed, out)
        if "*" in out:
            out = _SINGLE_STAR.sub(_single_removed, out)
        if "_" in out:
            out = _SINGLE_UNDERSCORE.sub(_single_removed, out)
    if "`" in out:
        out = out.replace("`", "")
    if not out.isascii():
        out = _DECORATIVE.sub("", out).translate(_CHARACTERS).replace("…", "...")
    multiline = "\n" in out
    if "|" in out:
        out = _TABLE_BLOCK.sub(_table_flat, out)
    if multiline or out.lstrip()[:1] in ("-", "*", "_", "="):
        out = _HRULE.sub(" ", out)
    if "#" in out:
        out = _HEADING.sub("", out)
    if ">" in out:
        out = _QUOTE.sub("", out)
    if multiline:
        out = _LINE_MARKER.sub("", out)
    if "  " in out or "\n" in out or "\t" in out or "\r" in out or not out.isascii():
        out = _SPACE.sub(" ", out)
    out = out.strip()
    if " " in out:
        out = _SPACE_BEFORE_PUNCT.sub("", out)
    return _fillers_removed(out)


def _fillers_removed(out: str) -> str:
    """Fillers at the start (with a list or quote marker they uncover, until none is left),
    then after every sentence end and between commas; then a space a removal left before
    punctuation. Removals after a sentence end never create one at the start, nor the
    reverse, so each kind runs once after the start is clean."""
    length = len(out)
    # First-character checks before each pattern: most steps start with none of them, and a
    # pattern of many alternatives costs more than the check (measured 1.5 µs a step).
    while out:
        first = out[0]
        if (first in _MARKER_FIRST or first.isdigit() or out[1:2] in (".", ")")) and (
            marker := _LINE_MARKER.match(out) or _QUOTE.match(out)
        ) is not None:
            out = out[marker.end() :]
        elif (pattern := _HEAD_BY_FIRST.get(first)) is not None and (
            head := pattern.match(out)
        ) is not None:
            out = _head_removed(head) + out[head.end() :]
        else:
            break
    if ". " in out or "? " in out or "! " in out or ": " in out or "; " in out:
        out = _FILLER_MID.sub(_mid_removed, out)
    if "," in out:
        out = _INTERJECTION.sub("", out)
    if len(out) != length:
        out = out.strip()
        if " ," in out or " ." in out or " ;" in out or " !" in out or " ?" in out:
            out = _SPACE_BEFORE_PUNCT.sub("", out)
    return _capitalised(out)
