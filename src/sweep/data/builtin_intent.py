"""The `intent` built-in dataset (classification): short customer-support messages, six intents.

Most messages name two or three intents; which one is the request depends on
composition (dismissal vs failure negation, "but"/"although", "instead of",
someone else's wish), never on a keyword alone. Requests are phrased with common
frames or, 30% of the time, rare indirect ones. Two documented sources of
irreducible error keep 100% out of reach: 10% of messages carry two equal
requests labelled with one of them at random, and 4% of labels are flipped.
See docs/builtin_dataset.md for the design and the calibration figures.
"""

from __future__ import annotations

import random
import re

from sweep.data.synth import unique_rows

INTENT_SEED = 20240917
INTENT_TRAIN, INTENT_EVAL = 4000, 1000
INTENT_NOISE = 0.04  # fraction of labels replaced by a different, random intent (train and eval alike)
INTENT_TAIL = 0.3  # share of requests phrased with a rare, indirect frame (_TAIL) instead of a common one
INTENT_MAX_PIECES = 20  # words + punctuation marks per message (keeps it within ~28 WordPiece tokens)


# ---------------------------------------------------------------- intent (classification)

# Objects are shared between intents so that nouns carry no label.
_ITEMS = ("my order", "the headphones", "the blender", "my jacket", "the charger", "the lamp", "my parcel")
_SERVICES = ("my subscription", "my plan", "my membership", "my account")

# Per intent: common verb frames, most frequent first (drawn with Zipf weights 1/rank);
# {i} = a purchased item, {s} = a service. The gerund form comes from _gerund() of the first word.
_INTENTS: dict[str, list[str]] = {
    "refund": [
        "get a refund for {i}", "get my money back for {i}", "return {i} for a refund", "be refunded for {s}",
        "get {s} refunded", "claim a refund on {i}", "send {i} back for reimbursement", "recover what i paid for {i}",
        "get compensated for {i}", "have {i} refunded to my card",
    ],
    "cancel": [
        "cancel {s}", "cancel {i}", "close {s}", "end {s} for good", "stop {s} renewing", "terminate {s}",
        "unsubscribe from {s}", "call off {i}", "delete {s}", "quit {s}",
    ],
    "delivery": [
        "track {i}", "change the address for {i}", "locate {i}", "get {i} delivered sooner", "reschedule {i}",
        "check when {i} will arrive", "redirect {i} to my office", "follow the courier with {i}",
        "pick up {i} from the depot", "speed up the shipping of {i}",
    ],
    "billing": [
        "fix a double charge on {s}", "update the card on {s}", "get an invoice for {i}", "dispute a fee on {s}",
        "correct the bill for {i}", "change the payment method on {s}", "understand a charge for {i}",
        "get a receipt for {i}", "remove a late fee from {s}", "split the payment for {i}",
    ],
    "technical": [
        "reset the password on {s}", "stop the app crashing", "log in to {s}", "sync {s} with the app",
        "fix the checkout error", "get the app to load {s}", "recover access to {s}", "fix the broken page for {i}",
        "make the app show {i}", "get past the login screen",
    ],
    "upgrade": [
        "upgrade {s} to premium", "switch {s} to yearly", "add a user to {s}", "get more storage on {s}",
        "move {s} to the family tier", "unlock the pro features on {s}", "raise the limits on {s}",
        "boost {s} to the top tier", "expand {s} with more seats", "buy the bigger bundle for {s}",
    ],
}
# Per intent: rare, indirect phrasings (drawn uniformly, INTENT_TAIL of the time). Many borrow a word that the
# head frames of another intent use ("payment", "stop", "move"), so the pretrained meaning alone can mislead.
_TAIL: dict[str, list[str]] = {
    "refund": [
        "see my money again for {i}", "undo the payment for {i}", "skip paying for {i} after all", "send {i} back to you",
        "have the charge for {i} reversed", "get the cost of {i} credited back", "be paid back for {i}",
        "get a credit for {i}", "reclaim the price of {i}", "swap {i} for cash", "get the fee for {s} returned",
        "hand {i} back for my cash", "recoup the money for {i}", "get reimbursed for {s}", "be made whole for {i}",
    ],
    "cancel": [
        "stop paying for {s} every month", "leave {s} behind", "be done with {s}", "opt out of {s}", "drop {s}",
        "wind down {s}", "let {s} lapse", "walk away from {s}", "put an end to {s}", "shut down {s}",
        "get rid of {s}", "switch off {s} forever", "remove {s} completely", "scrap {i}", "stop being billed for {s}",
    ],
    "delivery": [
        "know where {i} is right now", "see the route of {i}", "have {i} sent to my neighbour",
        "find out why {i} is late", "hurry up the courier with {i}", "get {i} to my door",
        "confirm {i} left the warehouse", "hold {i} at the post office", "get the tracking number for {i}",
        "push {i} to an earlier slot", "collect {i} in person", "move {i} to a new address", "get {i} here by friday",
        "see if {i} was shipped", "learn when the van comes with {i}",
    ],
    "billing": [
        "know why i paid twice for {s}", "see what i was charged for {i}", "put a new card on {s}",
        "get the tax right on {i}", "query the amount on {s}", "stop the extra charge on {s}",
        "get my statement for {s}", "settle the balance on {s}", "move {s} to another bank card",
        "fix the price on my bill for {i}", "check a payment for {i}", "pay for {s} by bank transfer",
        "sort out the charges on {s}", "get a copy of the bill for {i}", "see the payment history of {s}",
    ],
    "technical": [
        "get {s} working again", "make the screen stop freezing", "see {i} in the app", "open {s} on my phone",
        "get the code to arrive for {s}", "clear the error on {s}", "stop the page timing out",
        "make the buttons respond", "get the website to load", "get back into {s}",
        "repair the app after the update", "get notifications for {s} working", "fix the sign in for {s}",
        "make {s} show up in the app", "stop being logged out of {s}",
    ],
    "upgrade": [
        "get a bigger version of {s}", "pay extra to improve {s}", "take {s} up a level", "have more people on {s}",
        "unlock more space on {s}", "go premium with {s}", "improve {s} for my team", "give {s} extra seats",
        "get the full package on {s}", "extend {s} with the pro add-on", "step up {s} to gold",
        "share {s} with my whole family", "get faster service on {s}", "grow {s} for my company",
        "put {s} on the best tier",
    ],
}
_DOUBLED = ("cancel", "drop", "get", "let", "log", "put", "quit", "reset", "scrap", "shut", "skip", "split", "step", "stop",
            "swap")


def _gerund(verb: str) -> str:
    """English -ing form of the verbs used above ("get" -> "getting", "make" -> "making", "see" -> "seeing")."""
    if verb in _DOUBLED:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and verb not in ("be", "see"):
        return verb[:-1] + "ing"
    return verb + "ing"


# Per intent: problem statements (clauses); several carry a negation that does NOT mark a distractor.
_CLAUSES: dict[str, list[str]] = {
    "refund": ["i want my money back for {i}", "{i} was faulty and i expect a refund", "i was promised a refund for {i}"],
    "cancel": ["i no longer need {s}", "{s} is not worth keeping", "i am done with {s}"],
    "delivery": ["{i} has not arrived yet", "{i} never showed up", "{i} went to the wrong address"],
    "billing": ["i was charged twice for {s}", "the invoice for {i} is wrong", "there is a strange fee on {s}"],
    "technical": ["i can not log in to {s}", "the app keeps crashing", "{s} will not sync"],
    "upgrade": ["{s} does not have enough storage", "i want premium features on {s}", "i need more users on {s}"],
}
INTENT_LABELS = sorted(_INTENTS)

_GREETINGS = ("", "", "", "hi, ", "hello, ", "hey, ")
_ADVERBS = ("", "", "", "really ", "just ", "honestly ", "urgently ", "actually ")
_TAILS = (".", ".", ".", " please.", " today.", " now.", "!")
_PEOPLE = ("wife", "husband", "partner", "boss", "friend", "brother", "sister", "colleague")

# Template families: {a}/{ag}/{ac} = the deciding intent (infinitive / gerund / clause),
# {b}/{bg}/{bc} and {c}/{cg} = distractor intents, {adv} = optional adverb, {who} = another person.
_FAMILIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "single": (0.08, (
        "i {adv}need to {a}",
        "can you help me {a}",
        "i would {adv}like to {a}",
        "how do i {a}",
        "please help me with {ag}",
        "{ac}",
        "{ac}, can you help",
    )),
    # the clause after "but" / the main clause after "although" decides
    "contrast": (0.14, (
        "i wanted to {b}, but now i {adv}need to {a}",
        "i was going to {b} but i would {adv}rather {a}",
        "i thought about {bg}, but what i {adv}need is to {a}",
        "although i could {b}, i {adv}want to {a}",
        "even though you told me to {b}, i {adv}want to {a}",
        "i planned to {b}, but {ac}",
        "i was about to {b}, but {ac}",
    )),
    # the first intent is negated or dismissed, the second decides
    "negated_first": (0.14, (
        "i do not want to {b}, i {adv}want to {a}",
        "i am not trying to {b}; i {adv}need to {a}",
        "no need to {b}, just help me {a}",
        "instead of {bg}, please help me {a}",
        "i never asked to {b}; {ac}",
        "forget about {bg}, {ac}",
    )),
    # the first intent decides, the second is negated or set aside
    "negated_second": (0.14, (
        "i {adv}want to {a}, not {b}",
        "please help me {a} rather than {b}",
        "i would like to {a} instead of {bg}",
        "{ag} is what i {adv}need, not {bg}",
        "i {adv}need to {a}, but i do not want to {b}",
        "{ac}, but i do not want to {b}",
        "{ac}; i never asked to {b}",
    )),
    # three intents, two of them dismissed
    "three": (0.10, (
        "i do not want to {b} or {c}, i {adv}need to {a}",
        "i want to {a}, not {b} or {c}",
        "instead of {bg} or {cg}, help me {a}",
        "forget {bg} and {cg}, {ac}",
        "not {b}, not {c}, i {adv}want to {a}",
    )),
    # a failure report: the attempt that failed decides, even when it is negated or comes first
    "status": (0.16, (
        "i tried to {a} but it did not work",
        "{ag} did not work, but {bg} was fine",
        "{bg} worked fine, but {ag} failed",
        "i managed to {b}, but i still can not {a}",
        "i can {b} fine, but i can not {a}",
        "i could not {a}, even though i could {b}",
        "i still can not {a}, although {bg} worked",
    )),
    # two requests and no cue: either is right, the gold label is one of them at random (annotator disagreement);
    # both orders are listed so that position gives nothing away. No model can beat 50% here.
    "ambiguous": (0.10, (
        "i want to {a} and {b}",
        "i want to {b} and {a}",
        "can you help me {a} and {b}",
        "can you help me {b} and {a}",
        "i need to {a}, and also {b}",
        "i need to {b}, and also {a}",
        "{ac}, and i also want to {b}",
        "{bc}, and i also want to {a}",
    )),
    # someone else's wish is the distractor, the writer's own request decides
    "other_person": (0.14, (
        "my {who} wants to {b}, but i {adv}want to {a}",
        "i {adv}want to {a}; my {who} wants to {b}",
        "my {who} asked me to {b}, but {ac}",
        "i {adv}need to {a} while my {who} wants to {b}",
        "my {who} will {b} later, i {adv}need to {a}",
    )),
}


def _zipf(rng: random.Random, options: list[str]) -> str:
    return rng.choices(options, weights=[1 / rank for rank in range(1, len(options) + 1)])[0]


def _phrase(rng: random.Random, intent: str) -> tuple[str, str, str]:
    """(infinitive, gerund, clause) forms of one request for `intent`."""
    frame = rng.choice(_TAIL[intent]) if rng.random() < INTENT_TAIL else _zipf(rng, _INTENTS[intent])
    verb, _, rest = frame.partition(" ")
    i, s = rng.choice(_ITEMS), rng.choice(_SERVICES)
    inf, ger = frame.format(i=i, s=s), f"{_gerund(verb)} {rest}".format(i=i, s=s)
    return inf, ger, rng.choice(_CLAUSES[intent]).format(i=i, s=s)


def _intent_message(rng: random.Random) -> tuple[str, str, str]:
    """(message, true intent, template family); redrawn until it fits INTENT_MAX_PIECES."""
    label = rng.choice(INTENT_LABELS)
    families = list(_FAMILIES)
    family = rng.choices(families, weights=[_FAMILIES[f][0] for f in families])[0]
    while True:  # redraw within the family, so that the length limit does not skew the family mix
        template = rng.choice(_FAMILIES[family][1])
        others = rng.sample([n for n in INTENT_LABELS if n != label], 2)
        a, ag, ac = _phrase(rng, label)
        b, bg, bc = _phrase(rng, others[0])
        c, cg, _ = _phrase(rng, others[1])
        body = template.format(a=a, ag=ag, ac=ac, b=b, bg=bg, bc=bc, c=c, cg=cg, adv=rng.choice(_ADVERBS),
                               who=rng.choice(_PEOPLE))
        tail = "?" if template.startswith(("can ", "how ")) or template.endswith("help") else rng.choice(_TAILS)
        text = rng.choice(_GREETINGS) + body + tail
        if len(re.findall(r"\w+|[^\w\s]", text)) <= INTENT_MAX_PIECES:
            return text, label, family


def intent_rows() -> list[dict]:
    """Every `intent` message (train then eval) with its template family, before any split."""
    return unique_rows(random.Random(INTENT_SEED), _intent_message, INTENT_TRAIN + INTENT_EVAL, INTENT_LABELS, INTENT_NOISE)


def intent_records() -> tuple[list[dict], list[dict]]:
    """(train, eval) of the `intent` task: unique messages, eval disjoint from train, 4% label noise."""
    rows = [{"text": r["text"], "label": r["label"]} for r in intent_rows()]
    return rows[:INTENT_TRAIN], rows[INTENT_TRAIN:]
