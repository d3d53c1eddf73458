"""Writes the demo's small SST-2-style data set (data/demo/SST-2/{train,dev}.tsv) from phrases written
for this project; no GLUE text. Deterministic: rerunning rewrites the same files.

    python data/demo/make_demo_data.py
"""
import os
import random

SUBJECTS = [
    "the film", "this movie", "the story", "the cast", "the script", "the director 's latest", "the sequel",
    "the soundtrack", "the final act", "the lead performance", "this comedy", "the documentary", "the thriller",
    "the animated feature", "the screenplay", "the camera work", "this romance", "the remake", "the ensemble",
    "the opening hour",
]
POSITIVE = [
    "is a warm and funny delight", "shines with clever dialogue", "moves with grace and real feeling",
    "is smart , tender and beautifully acted", "earns every one of its laughs", "is a joy to watch",
    "has a generous heart and a sharp wit", "feels fresh and alive", "rewards the patient viewer",
    "is gripping from the first scene", "is quietly brilliant", "sparkles with invention",
    "is the best thing of its kind in years", "left me grinning", "handles its big themes with care",
    "is lovely and surprisingly moving", "never strikes a false note", "is wonderfully played",
    "finds honest emotion in small moments", "is confident , stylish entertainment", "keeps you hooked",
    "is a triumph of craft", "makes the familiar feel new", "is charming and wise", "delivers real thrills",
]
NEGATIVE = [
    "is a tedious mess", "drags on without purpose", "is flat , dull and lifeless", "wastes a talented cast",
    "never finds its rhythm", "is a chore to sit through", "feels cheap and lazy", "has nothing new to say",
    "is loud but empty", "collapses under its own weight", "is painfully unfunny", "bored me to tears",
    "is clumsy and confused", "squanders a promising idea", "is stiff and lifeless", "goes nowhere slowly",
    "is a forgettable waste of time", "rings hollow", "is shrill and tiresome", "falls apart in the end",
    "is predictable from start to finish", "lacks any spark", "is a muddled disappointment",
    "offers little but noise", "is as stale as it is long",
]
TAILS = ["", "", "", " , even on a second viewing", " , for the most part", " from beginning to end",
         " , despite its modest budget", " , which is saying something", " in every way that matters",
         " , no question", " , sadly", " , happily"]
CONTRASTS = ["although {a} {pa} , {b} {pb}", "{a} {pa} , but {b} {pb}"]  # the label follows the second clause


def sentences(rng, n):
    out = set()
    while len(out) < n:
        label = rng.random() < 0.5
        pool = POSITIVE if label else NEGATIVE
        if rng.random() < 0.25:
            other = NEGATIVE if label else POSITIVE
            a, b = rng.sample(SUBJECTS, 2)
            text = rng.choice(CONTRASTS).format(a=a, pa=rng.choice(other), b=b, pb=rng.choice(pool))
        else:
            text = f"{rng.choice(SUBJECTS)} {rng.choice(pool)}{rng.choice(TAILS)}"
        out.add((text + " ", int(label)))
    return sorted(out)


def main():
    rng = random.Random(2020)
    rows = sentences(rng, 420)
    rng.shuffle(rows)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "SST-2")
    os.makedirs(here, exist_ok=True)
    for name, part in (("train", rows[:320]), ("dev", rows[320:])):
        with open(os.path.join(here, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in part))
        print(f"wrote {name}.tsv: {len(part)} rows, {sum(y for _, y in part)} positive")


if __name__ == "__main__":
    main()
