"""Small TinyStories-like text made up on the spot, so the tests need no download and no shared data."""

import random

NAMES = ["Lily", "Tom", "Mia", "Ben", "Sue", "Max", "Anna", "Sam", "Zoé", "Tim"]
ANIMALS = ["dog", "cat", "bird", "frog", "bunny", "fish", "bear", "duck"]
PLACES = ["park", "garden", "forest", "beach", "house", "farm", "river", "zoo"]
THINGS = ["ball", "kite", "box", "apple", "toy", "hat", "cake", "boat"]
FEELINGS = ["happy", "sad", "scared", "excited", "tired", "proud", "angry", "calm"]
SENTENCES = [
    "Once upon a time, there was a little {animal} named {name}.",
    "{name} went to the {place} with a red {thing}.",
    "One day, {name} saw a big {animal} near the {place}.",
    '"Can I play with your {thing}?" asked {name}.',
    "The {animal} was {feeling} because it lost its {thing}.",
    "{name} and the {animal} looked for the {thing} all day.",
    "They found the {thing} under a tree and felt {feeling}.",
    '{name} said, "Thank you, {animal}! You are my friend."',
    "At the end of the day, {name} went home and smiled.",
]


def make_story(rng):
    words = {
        "name": rng.choice(NAMES),
        "animal": rng.choice(ANIMALS),
        "place": rng.choice(PLACES),
        "thing": rng.choice(THINGS),
        "feeling": rng.choice(FEELINGS),
    }
    first, *rest = SENTENCES
    body = [first] + rng.sample(rest, rng.randint(3, len(rest)))
    paragraphs = [" ".join(s.format(**words) for s in body[i : i + 3]) for i in range(0, len(body), 3)]
    return "\n".join(paragraphs)


def make_stories(n, seed=0):
    rng = random.Random(seed)
    return [make_story(rng) for _ in range(n)]


def write_txt(path, stories):
    """The TinyStories release format: each story followed by a line holding <|endoftext|>."""
    path.write_text("".join(f"{story}\n<|endoftext|>\n" for story in stories), encoding="utf-8")
    return path


def write_data_folder(folder, n_stories, seed, n_valid):
    """A DATA_PATH folder: train.txt, and valid.txt with the last n_valid stories."""
    folder.mkdir()
    stories = make_stories(n_stories, seed=seed)
    write_txt(folder / "train.txt", stories[:-n_valid])
    write_txt(folder / "valid.txt", stories[-n_valid:])
    return folder
