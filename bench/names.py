"""Bad prompt-name rates of stickers before and after naming.py, from the labelled review sample.

    .venv/bin/python bench/names.py [collage/assets/names/review_sample.csv]

Columns: old_ok (old manifest's name), first_new_ok (naming.py before the sample's findings went into
overrides.csv), new_ok (current). Empty: the asset has no name in that build (absent or dropped).
"""

import csv
import sys
from pathlib import Path

path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "collage/assets/names/review_sample.csv")
rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
print(f"{len(rows)} sampled sticker ids ({path.name})")
for col, label in (("old_ok", "before (old names)"), ("first_new_ok", "after, first pass"), ("new_ok", "after (current)")):
    labelled = [r[col] for r in rows if r[col] != ""]
    bad = labelled.count("0")
    print(f"{label:22s} {bad:4d} bad / {len(labelled):4d} named = {100 * bad / max(1, len(labelled)):5.1f} %")
