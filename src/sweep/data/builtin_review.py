"""The deterministic generator of the built-in `review` task (classification, 3 labels).

`review`: one-line product reviews labelled `negative`, `neutral` or `positive`: the
writer's own overall verdict on the product. It is the second classification task
on the embedded MiniLM, so that two studies on one base model (one adapter and one
classifier head per task) can run offline; it shares no text and no labels with
`intent`. Opinion words point both ways: the verdict depends on composition (the
clause after "but", negation, someone else's opinion, an expectation that was or was
not met, a question or a reported opinion that gives no verdict), not on a keyword.
Two documented sources of irreducible error keep 100% out of reach: 8% of reviews
praise one thing and fault another with no cue, labelled with one of the two at
random, and 4% of labels are flipped.

Registered in `sweep.data.builtin.DATASETS`; `python -m sweep.data.builtin` writes
its files with the others, byte-identical on every run (fixed seed, `random.Random`
only, no set or hash ordering). See docs/builtin_dataset.md.
"""

from __future__ import annotations

import random
import re

REVIEW_SEED = 20261123
REVIEW_TRAIN, REVIEW_EVAL = 4000, 1000
REVIEW_NOISE = 0.04  # fraction of labels replaced by a different, random label (train and eval alike)
REVIEW_MAX_PIECES = 20  # words + punctuation marks per review (keeps it within ~28 WordPiece tokens)
REVIEW_LABELS = ["negative", "neutral", "positive"]  # ids in this (sorted) order

# Products and their parts are shared by every label, so that nouns carry no label.
_PRODUCTS = ("the kettle", "this lamp", "the backpack", "the toaster", "this mattress", "the speaker", "the drill",
             "these boots", "the monitor", "this jacket", "the vacuum", "the tent")
_PARTS = ("the handle", "the cable", "the lid", "the strap", "the battery", "the buttons", "the box", "the manual",
          "the colour", "the zip")
_WHO = ("wife", "husband", "partner", "brother", "sister", "friend", "neighbour", "colleague")
_DAYS = ("monday", "tuesday", "friday", "the weekend", "time", "the second day")

# Per polarity: adjectives (for "is {adj}" and "is not {adj}") and full opinion clauses about a product {p}.
_ADJ = {
    "positive": ("excellent", "sturdy", "reliable", "comfortable", "quiet", "great", "solid", "lovely", "brilliant",
                 "well made", "sharp", "warm"),
    "negative": ("flimsy", "useless", "noisy", "awful", "cheap", "disappointing", "broken", "fragile", "terrible",
                 "poorly made", "wobbly", "slow"),
}
_CLAUSE = {
    "positive": ("i love {p}", "{p} is {adj}", "{p} turned out {adj}", "{p} was worth every penny",
                 "{p} does exactly what it should", "i would buy {p} again", "{p} exceeded my expectations",
                 "i really like {p}", "{p} has been {adj} so far", "{p} is not {neg} at all", "i can not fault {p}"),
    "negative": ("i hate {p}", "{p} is {adj}", "{p} turned out {adj}", "{p} is a waste of money",
                 "{p} stopped working after a week", "i would not buy {p} again", "{p} went straight back",
                 "i regret buying {p}", "{p} has been {adj} so far", "{p} is far from {pos}", "{p} is not {pos} at all"),
}
# About a part, not the product: the aside that a contrast overrides.
_ASIDE = {
    "positive": ("{q} is {adj}", "{q} looks {adj}", "i like {q}", "{q} is not bad"),
    "negative": ("{q} is {adj}", "{q} looks {adj}", "i do not like {q}", "{q} was damaged"),
}
_OTHER = {"positive": "negative", "negative": "positive"}

_GREETINGS = ("", "", "", "update: ", "honestly, ", "so, ")
_TAILS = (".", ".", ".", "!", " overall.", " so far.")

# family -> (share, templates). {a}/{aa}/{aadj} = opinion clause / aside / adjective of the deciding polarity,
# {b}/{bb}/{badj} = the other polarity, {p} = product, {q} = a part, {who} = another person, {day} = when.
_FAMILIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "single": (0.14, ("{a}", "in short, {a}", "{a}, that is my verdict")),
    "contrast": (0.16, (
        "{bb}, but {a}", "although {bb}, {a}", "{a}, even though {bb}", "{bb}; still, {a}", "{bb}, however {a}",
    )),
    "negation": (0.10, (
        "i would not say {p} is {badj}", "nobody could call {p} {badj}", "{p} is anything but {badj}",
        "i would never call {p} {badj}",
    )),
    "other_person": (0.12, (
        "my {who} says {p} is {badj}, but {a}", "my {who} thinks {p} is {badj}; {a}", "{a}, whatever my {who} says",
        "my {who} returned theirs, but {a}",
    )),
    "expectation": (0.12, (
        "i expected {p} to be {badj}, but {a}", "i was worried {p} would be {badj}, but {a}",
        "i thought {p} would be {badj}, and {a}",
    )),
    "unmet": (0.06, (
        "i hoped {p} would be {padj}", "{p} would be {padj} if it worked", "{p} should have been {padj}",
        "i wanted {p} to be {padj}",
    )),
    "neutral": (0.22, (
        "{p} arrived on {day}", "i have not tried {p} yet", "does {p} come with {q}?",
        "is {p} really as {adj} as they say?", "my {who} says {p} is {adj}; i have not used it yet",
        "i bought {p} as a gift for my {who}", "will {p} fit in a small flat?", "can i return {p} if {q} is {adj}?",
        "i ordered {p} on {day} and will review it later", "which colour did {p} come in?",
    )),
    # praise and fault with no cue: either is right, the gold label is one of them at random (both orders listed)
    "ambiguous": (0.08, (
        "{p} is {padj} and {q} is {nadj}", "{q} is {nadj} and {p} is {padj}", "{p} is {padj}, {q} is {nadj}",
        "{q} is {nadj}, {p} is {padj}",
    )),
}


def _opinion(rng: random.Random, polarity: str, p: str) -> str:
    """One clause giving the writer's verdict on product `p` with `polarity`."""
    return rng.choice(_CLAUSE[polarity]).format(p=p, adj=rng.choice(_ADJ[polarity]), pos=rng.choice(_ADJ["positive"]),
                                                neg=rng.choice(_ADJ["negative"]))


def _review(rng: random.Random) -> tuple[str, str, str]:
    """(review, label, template family); redrawn within the family until it fits REVIEW_MAX_PIECES."""
    families = list(_FAMILIES)
    family = rng.choices(families, weights=[_FAMILIES[f][0] for f in families])[0]
    while True:
        template = rng.choice(_FAMILIES[family][1])
        p, q, who, day = rng.choice(_PRODUCTS), rng.choice(_PARTS), rng.choice(_WHO), rng.choice(_DAYS)
        polarity = rng.choice(("negative", "positive"))
        other = _OTHER[polarity]
        fields = dict(p=p, q=q, who=who, day=day, adj=rng.choice(_ADJ[rng.choice(("negative", "positive"))]),
                      padj=rng.choice(_ADJ["positive"]), nadj=rng.choice(_ADJ["negative"]),
                      a=_opinion(rng, polarity, p), b=_opinion(rng, other, p),
                      aa=rng.choice(_ASIDE[polarity]).format(q=q, adj=rng.choice(_ADJ[polarity])),
                      bb=rng.choice(_ASIDE[other]).format(q=q, adj=rng.choice(_ADJ[other])),
                      aadj=rng.choice(_ADJ[polarity]), badj=rng.choice(_ADJ[other]))
        if family == "negation":
            label = polarity  # "not {badj}" denies the other polarity
        elif family == "unmet":
            label = "negative"
        elif family == "neutral":
            label = "neutral"
        elif family == "ambiguous":
            label = rng.choice(("negative", "positive"))
        else:
            label = polarity
        body = template.format(**fields)
        tail = "" if body.endswith("?") else rng.choice(_TAILS)
        text = rng.choice(_GREETINGS) + body + tail
        if len(re.findall(r"\w+|[^\w\s]", text)) <= REVIEW_MAX_PIECES:
            return text, label, family


def review_rows() -> list[dict]:
    """Every `review` (train then eval) with its template family, before any split."""
    rng = random.Random(REVIEW_SEED)
    seen: set[str] = set()  # membership only, never iterated
    rows: list[dict] = []
    while len(rows) < REVIEW_TRAIN + REVIEW_EVAL:
        text, label, family = _review(rng)
        if text in seen:
            continue
        seen.add(text)
        if rng.random() < REVIEW_NOISE:
            label = rng.choice([n for n in REVIEW_LABELS if n != label])
            family = "noise"
        rows.append({"text": text, "label": label, "family": family})
    return rows


def review_records() -> tuple[list[dict], list[dict]]:
    """(train, eval) of the `review` task: unique reviews, eval disjoint from train, 4% label noise."""
    rows = [{"text": r["text"], "label": r["label"]} for r in review_rows()]
    return rows[:REVIEW_TRAIN], rows[REVIEW_TRAIN:]
