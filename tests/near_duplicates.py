"""A labelled set for near-duplicate detection: distinct sentences over one English vocabulary,
and variants of them that a person would call the same text (case, spacing, typos, swapped
words, and a mix)."""

from __future__ import annotations

import random

from faker import Faker

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def distinct_texts(count: int, seed: int) -> list[str]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < count:
        texts[fake.sentence(nb_words=rng.randint(6, 18))] = None
    return list(texts)


def _typos(rng: random.Random, text: str, count: int) -> str:
    chars = list(text)
    for _ in range(count):
        i = rng.randrange(len(chars) - 1)
        kind = rng.choice(["replace", "delete", "insert", "transpose"])
        if kind == "replace":
            chars[i] = rng.choice(LETTERS)
        elif kind == "delete":
            del chars[i]
        elif kind == "insert":
            chars.insert(i, rng.choice(LETTERS))
        else:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def _swap_words(rng: random.Random, text: str) -> str:
    words = text.split()
    i = rng.randrange(len(words) - 1)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def variant(rng: random.Random, text: str) -> tuple[str, str]:
    """(kind, near-duplicate of text)."""
    kind = rng.choice(["case", "whitespace", "typos", "swapped", "mixed"])
    if kind == "case":
        return kind, text.upper() if rng.random() < 0.5 else text.title()
    if kind == "whitespace":
        return kind, "  " + text.replace(" ", "   ", 3) + " \t\n"
    if kind == "typos":
        return kind, _typos(rng, text, rng.randint(1, 3))
    if kind == "swapped":
        return kind, _swap_words(rng, text)
    return kind, _typos(rng, _swap_words(rng, text), 1).upper()
