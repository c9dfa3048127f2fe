"""Generator of `instruct_llm`: short-answer instruction tuning for a small pretrained chat model.

Designed and calibrated for SmolLM2-135M-Instruct (docs/builtin_dataset.md): every
instruction asks for a one-word or one-number answer (1-3 tokens), and the base model
(no adapter, greedy, chat template) is well below 100% on every kind, either because
it answers in a sentence, echoes the input, or does not know. Kinds need either the
model's pretrained knowledge (capitals, irregular past tenses, opposites) or a rule
learnt from the training examples (larger number, odd one out, day arithmetic).

Within a kind, every input is unique, and for list-based kinds the items are split
before drawing, so no eval item (country, verb, word pair) is ever seen in training.
Fixed seed, `random.Random` only, no set or hash ordering: regeneration is byte-identical.
"""

from __future__ import annotations

import random

LLM_SEED = 20261123

ONE_WORD = "Answer with one word."
ONE_NUMBER = "Answer with a number."

_CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Greece", "Athens"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Turkey", "Ankara"),
    ("Chile", "Santiago"), ("Cuba", "Havana"), ("Hungary", "Budapest"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Thailand", "Bangkok"), ("England", "London"), ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Syria", "Damascus"),
    ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Afghanistan", "Kabul"), ("Pakistan", "Islamabad"),
    ("Bangladesh", "Dhaka"), ("Nepal", "Kathmandu"), ("Vietnam", "Hanoi"), ("the Philippines", "Manila"),
    ("Indonesia", "Jakarta"), ("South Korea", "Seoul"), ("North Korea", "Pyongyang"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("the Czech Republic", "Prague"),
    ("Iceland", "Reykjavik"), ("Scotland", "Edinburgh"), ("Wales", "Cardiff"), ("Venezuela", "Caracas"),
    ("Ecuador", "Quito"), ("Uruguay", "Montevideo"), ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Morocco", "Rabat"),
    ("Algeria", "Algiers"), ("Tunisia", "Tunis"), ("Libya", "Tripoli"), ("Sudan", "Khartoum"), ("Uganda", "Kampala"),
    ("Zimbabwe", "Harare"), ("Senegal", "Dakar"), ("Saudi Arabia", "Riyadh"), ("Qatar", "Doha"),
    ("Jamaica", "Kingston"), ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"),
    ("Belarus", "Minsk"), ("Georgia", "Tbilisi"), ("Armenia", "Yerevan"), ("Azerbaijan", "Baku"),
    ("New Zealand", "Wellington"), ("Slovakia", "Bratislava"), ("Mexico", "Mexico City"),
)
_PAST = (
    ("go", "went"), ("eat", "ate"), ("run", "ran"), ("swim", "swam"), ("see", "saw"), ("take", "took"),
    ("write", "wrote"), ("sing", "sang"), ("drink", "drank"), ("buy", "bought"), ("think", "thought"),
    ("teach", "taught"), ("fly", "flew"), ("speak", "spoke"), ("break", "broke"), ("choose", "chose"),
    ("drive", "drove"), ("give", "gave"), ("begin", "began"), ("bring", "brought"), ("catch", "caught"),
    ("come", "came"), ("do", "did"), ("draw", "drew"), ("fall", "fell"), ("feel", "felt"), ("fight", "fought"),
    ("find", "found"), ("forget", "forgot"), ("freeze", "froze"), ("get", "got"), ("grow", "grew"),
    ("hang", "hung"), ("hear", "heard"), ("hide", "hid"), ("hold", "held"), ("keep", "kept"), ("know", "knew"),
    ("lead", "led"), ("leave", "left"), ("lend", "lent"), ("lose", "lost"), ("make", "made"), ("meet", "met"),
    ("pay", "paid"), ("ride", "rode"), ("ring", "rang"), ("rise", "rose"), ("say", "said"), ("sell", "sold"),
    ("send", "sent"), ("shake", "shook"), ("shine", "shone"), ("shoot", "shot"), ("sit", "sat"), ("sleep", "slept"),
    ("steal", "stole"), ("stand", "stood"), ("sting", "stung"), ("strike", "struck"), ("swear", "swore"),
    ("tear", "tore"), ("tell", "told"), ("throw", "threw"), ("wake", "woke"), ("wear", "wore"), ("win", "won"),
    ("bite", "bit"), ("blow", "blew"), ("build", "built"), ("dig", "dug"), ("feed", "fed"), ("flee", "fled"),
    ("grind", "ground"), ("kneel", "knelt"), ("seek", "sought"), ("slide", "slid"), ("spin", "spun"),
    ("weep", "wept"), ("wind", "wound"),
)
_ANTONYMS = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("open", "closed"), ("light", "dark"),
    ("happy", "sad"), ("early", "late"), ("full", "empty"), ("hard", "soft"), ("rich", "poor"), ("strong", "weak"),
    ("wet", "dry"), ("high", "low"), ("long", "short"), ("thick", "thin"), ("loud", "quiet"), ("clean", "dirty"),
    ("win", "lose"), ("buy", "sell"), ("first", "last"), ("day", "night"), ("inside", "outside"), ("push", "pull"),
    ("cheap", "expensive"), ("young", "old"), ("heavy", "light"), ("true", "false"), ("alive", "dead"),
    ("friend", "enemy"), ("love", "hate"), ("north", "south"), ("east", "west"), ("top", "bottom"),
    ("begin", "end"), ("accept", "refuse"), ("arrive", "leave"), ("remember", "forget"), ("laugh", "cry"),
    ("question", "answer"), ("summer", "winter"), ("sweet", "sour"), ("wide", "narrow"), ("deep", "shallow"),
    ("brave", "cowardly"), ("polite", "rude"), ("safe", "dangerous"), ("present", "absent"), ("always", "never"),
    ("maximum", "minimum"),
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# no word belongs to two categories (no orange, lime, peach, olive, violet), so odd-one-out has one answer
_CATEGORIES = {
    "animal": ("dog", "cat", "horse", "lion", "tiger", "rabbit", "eagle", "shark", "frog", "bear", "wolf", "goat",
               "camel", "monkey", "zebra", "mouse", "snake", "whale", "owl", "deer"),
    "fruit": ("apple", "banana", "grape", "lemon", "mango", "pear", "melon", "kiwi", "papaya", "fig", "coconut",
              "pineapple", "strawberry", "raspberry", "blueberry", "watermelon", "guava", "avocado", "pomegranate",
              "nectarine"),
    "vehicle": ("car", "bus", "truck", "bicycle", "train", "boat", "plane", "tractor", "scooter", "van", "taxi",
                "ship", "tram", "helicopter", "motorcycle", "canoe", "yacht", "jeep", "ferry", "submarine"),
    "color": ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white", "gray", "crimson",
              "navy", "beige", "turquoise", "maroon", "scarlet", "magenta", "teal", "cyan", "khaki"),
}

# kind -> (train examples, eval examples); eval = 20 per kind, 160 in all
LLM_QUOTAS: dict[str, tuple[int, int]] = {
    "capital": (56, 20), "past_tense": (60, 20), "antonym": (30, 20), "category": (60, 20),
    "larger": (120, 20), "odd_one_out": (120, 20), "day_after": (22, 20), "add": (120, 20),
}


def _day_after(rng: random.Random) -> list[dict]:
    out = []
    for d in range(7):
        for k in range(1, 7):
            out.append({"instruction": f"What day of the week is it {k} day{'s' if k > 1 else ''} after the given day? "
                                       f"{ONE_WORD}", "input": _DAYS[d], "output": _DAYS[(d + k) % 7]})
    rng.shuffle(out)
    return out


def _candidates(kind: str, rng: random.Random) -> list[dict]:
    """Every example of a kind, unique inputs, in a seeded random order (eval is taken from the front)."""
    if kind == "capital":
        rows = [{"instruction": f"What is the capital city of the country? {ONE_WORD}", "input": c, "output": a}
                for c, a in _CAPITALS]
    elif kind == "past_tense":
        rows = [{"instruction": f"What is the past tense of the verb? {ONE_WORD}", "input": v, "output": p}
                for v, p in _PAST]
    elif kind == "antonym":  # one direction per pair, so the reverse of an eval pair is never in train
        rows = [{"instruction": f"What is the opposite of the word? {ONE_WORD}", "input": a, "output": b}
                if rng.random() < 0.5 else
                {"instruction": f"What is the opposite of the word? {ONE_WORD}", "input": b, "output": a}
                for a, b in _ANTONYMS]
    elif kind == "category":
        names = sorted(_CATEGORIES)
        rows = [{"instruction": f"Is it an animal, a fruit, a vehicle or a color? {ONE_WORD}", "input": w, "output": c}
                for c in names for w in _CATEGORIES[c]]
    elif kind == "day_after":
        return _day_after(rng)
    else:
        rows, seen = [], []
        n = sum(LLM_QUOTAS[kind])
        while len(rows) < n:
            rec = _combinatorial(kind, rng)
            if rec["input"] not in seen:
                seen.append(rec["input"])
                rows.append(rec)
        return rows
    rng.shuffle(rows)
    return rows


def _combinatorial(kind: str, rng: random.Random) -> dict:
    if kind == "larger":
        x, y = rng.sample(range(10, 1000), 2)
        return {"instruction": f"Which of the two numbers is larger? {ONE_NUMBER}", "input": f"{x} or {y}",
                "output": str(max(x, y))}
    if kind == "add":
        x, y = rng.randint(2, 49), rng.randint(2, 49)
        return {"instruction": f"Add the two numbers. {ONE_NUMBER}", "input": f"{x} + {y}", "output": str(x + y)}
    # odd_one_out: three words of one category and one of another, in random order
    names = sorted(_CATEGORIES)
    same, other = rng.sample(names, 2)
    words = rng.sample(_CATEGORIES[same], 3)
    odd = rng.choice(_CATEGORIES[other])
    words.insert(rng.randrange(4), odd)
    return {"instruction": f"Which word does not belong with the others? {ONE_WORD}", "input": ", ".join(words),
            "output": odd}


def llm_records() -> tuple[list[dict], list[dict]]:
    """(train, eval) of `instruct_llm`: per kind, eval first from the shuffled candidates, then train; shuffled."""
    rng = random.Random(LLM_SEED)
    train: list[dict] = []
    eval: list[dict] = []
    for kind, (n_train, n_eval) in LLM_QUOTAS.items():
        rows = _candidates(kind, rng)
        if len(rows) < n_train + n_eval:
            raise ValueError(f"instruct_llm: kind {kind} has {len(rows)} examples, quotas need {n_train + n_eval}")
        eval += rows[:n_eval]
        train += rows[n_eval:n_eval + n_train]
    rng.shuffle(train)
    rng.shuffle(eval)
    return train, eval


def kind_of(rec: dict) -> str:
    """The kind of an `instruct_llm` record, from its instruction (for per-kind calibration tables)."""
    for kind, prefix in (("capital", "What is the capital"), ("past_tense", "What is the past tense"),
                         ("antonym", "What is the opposite"), ("category", "Is it an animal"),
                         ("larger", "Which of the two numbers"), ("add", "Add the two"),
                         ("odd_one_out", "Which word does not belong"), ("day_after", "What day of the week")):
        if rec["instruction"].startswith(prefix):
            return kind
    raise ValueError(f"not an instruct_llm instruction: {rec['instruction']!r}")
