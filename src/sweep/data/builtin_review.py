"""The deterministic generator of the built-in `review` task (classification, 4 labels).

`review`: one-line product reviews labelled with the department of the product the
review is about: `clothing`, `electronics`, `kitchen` or `outdoor`. It is the second
classification task on the embedded MiniLM, so that two studies on one base model (one
adapter and one classifier head per task) can run offline; it shares no text and no
labels with `intent`. Most reviews name a second product of another department (a
comparison, the product it replaced, a bundle, someone else's purchase, a return); which
one is reviewed depends on the sentence, not on a keyword. Opinions are drawn the same
way for every department, so they carry no label. Two documented sources of irreducible
error keep 100% out of reach: 8% of reviews judge two products together with no cue,
labelled with one of the two at random, and 4% of labels are flipped.

Registered in `sweep.data.builtin.DATASETS`; `python -m sweep.data.builtin` writes its
files with the others, byte-identical on every run (fixed seed, `random.Random` only, no
set or hash ordering). See docs/builtin_dataset.md for the design and the calibration.
"""

from __future__ import annotations

import random
import re

from sweep.data.synth import unique_rows

REVIEW_SEED = 20261123
REVIEW_TRAIN, REVIEW_EVAL = 4000, 1000
REVIEW_NOISE = 0.04  # fraction of labels replaced by a different, random department (train and eval alike)
REVIEW_MAX_PIECES = 20  # words + punctuation marks per review (keeps it within ~28 WordPiece tokens)

# department -> products (the reviewed one decides the label); 12 per department
_PRODUCTS: dict[str, tuple[str, ...]] = {
    "clothing": ("jacket", "pair of boots", "raincoat", "scarf", "pair of jeans", "hoodie", "pair of gloves", "dress",
                 "wool jumper", "pair of trainers", "belt", "winter coat"),
    "electronics": ("laptop", "pair of headphones", "phone charger", "monitor", "bluetooth speaker", "smartwatch",
                    "keyboard", "webcam", "tablet", "power bank", "router", "e-reader"),
    "kitchen": ("kettle", "toaster", "blender", "frying pan", "coffee grinder", "rice cooker", "knife set",
                "stand mixer", "teapot", "chopping board", "slow cooker", "microwave"),
    "outdoor": ("tent", "sleeping bag", "camping stove", "hiking backpack", "head torch", "folding chair",
                "water filter", "trekking pole", "cool box", "hammock", "bike lock", "garden hose"),
}
REVIEW_LABELS = sorted(_PRODUCTS)  # ids in this sorted order

# opinions, the same for every department (so they carry no label)
_GOOD = ("great", "excellent", "sturdy", "reliable", "well made", "worth the money", "lovely", "solid")
_BAD = ("flimsy", "disappointing", "useless", "cheaply made", "awful", "not worth the money", "fragile", "noisy")
_VERDICT = ("is {adj}", "turned out {adj}", "has been {adj} so far", "feels {adj}", "looks {adj}")
_WHO = ("wife", "husband", "partner", "brother", "sister", "friend", "neighbour", "colleague")
_GREETINGS = ("", "", "", "update: ", "honestly, ", "so, ")
_TAILS = (".", ".", ".", "!", " overall.", " so far.")

# family -> (share, templates). {a} = the reviewed product (decides), {b} = a product of another department,
# {v} = a verdict ("is sturdy"), {w} = another verdict, {who} = another person.
_FAMILIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "single": (0.20, ("the {a} {v}", "my new {a} {v}", "i bought the {a} last month and it {v}", "this {a} {v}")),
    # compared with a product of another department: the subject of the verdict decides
    "comparison": (0.16, (
        "the {a} {v}, much better than the {b} i bought here", "unlike the {b}, the {a} {v}",
        "compared to my {b}, this {a} {v}", "the {b} was fine, but the {a} {v}",
    )),
    # the old product is the distractor, the one bought instead decides
    "replaced": (0.14, (
        "i returned the {b} and kept the {a}; it {v}", "the {a} replaced my old {b} and it {v}",
        "instead of a new {b} i got the {a}, which {v}", "sent the {b} back, so this review is about the {a}: it {v}",
    )),
    # someone else's product is the distractor
    "other_person": (0.14, (
        "my {who} loves her {b}, but my {a} {v}", "my {who} reviewed the {b}; i am reviewing the {a}, which {v}",
        "this is my {who}'s account, she bought the {b}; my {a} {v}", "my {a} {v}, my {who}'s {b} {w}",
    )),
    # a bundle or an order of two: the one with the verdict decides, in either order
    "bundle": (0.14, (
        "ordered the {a} with a {b}; the {a} {v}", "the {b} came with the {a}, and only the {a} {v}",
        "bought a {b} and the {a}, this review is for the {a}: it {v}", "the {a} {v}; the {b} has not arrived yet",
    )),
    # a question about another product after the verdict
    "question": (0.14, (
        "the {a} {v}; does anyone know if the {b} is any good?", "happy enough with the {a}, it {v}. is the {b} worth it?",
        "the {a} {v}. should i also get the {b}?",
    )),
    # two products judged together, no cue: either is right, the gold label is one of them at random
    "ambiguous": (0.08, (
        "the {a} and the {b} both {v}", "the {b} and the {a} both {v}", "the {a} {v} and so does the {b}",
        "the {b} {v} and so does the {a}",
    )),
}


def _verdict(rng: random.Random) -> str:
    adj = rng.choice(_GOOD if rng.random() < 0.5 else _BAD)
    return rng.choice(_VERDICT).format(adj=adj)


def _review(rng: random.Random) -> tuple[str, str, str]:
    """(review, department, template family); redrawn within the family until it fits REVIEW_MAX_PIECES."""
    families = list(_FAMILIES)
    family = rng.choices(families, weights=[_FAMILIES[f][0] for f in families])[0]
    while True:
        label = rng.choice(REVIEW_LABELS)
        other = rng.choice([d for d in REVIEW_LABELS if d != label])
        template = rng.choice(_FAMILIES[family][1])
        a, b = rng.choice(_PRODUCTS[label]), rng.choice(_PRODUCTS[other])
        body = template.format(a=a, b=b, v=_verdict(rng), w=_verdict(rng), who=rng.choice(_WHO))
        if family == "ambiguous":
            label = rng.choice((label, other))
        tail = "" if body.endswith("?") else rng.choice(_TAILS)
        text = rng.choice(_GREETINGS) + body + tail
        if len(re.findall(r"\w+|[^\w\s]", text)) <= REVIEW_MAX_PIECES:
            return text, label, family


def review_rows() -> list[dict]:
    """Every `review` (train then eval) with its template family, before any split."""
    return unique_rows(random.Random(REVIEW_SEED), _review, REVIEW_TRAIN + REVIEW_EVAL, REVIEW_LABELS, REVIEW_NOISE)


def review_records() -> tuple[list[dict], list[dict]]:
    """(train, eval) of the `review` task: unique reviews, eval disjoint from train, 4% label noise."""
    rows = [{"text": r["text"], "label": r["label"]} for r in review_rows()]
    return rows[:REVIEW_TRAIN], rows[REVIEW_TRAIN:]
