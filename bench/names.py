"""Bad prompt-name rates of stickers before and after naming.py, from the labelled review sample.

    .venv/bin/python bench/names.py [review_sample.csv [review_sample_2.csv [review_sample_3.csv]]]

Columns: old_ok (old manifest's name), first_new_ok (naming.py before the sample's findings went into
overrides.csv), new_ok (current). Empty: the asset has no name in that build (absent or dropped).

review_sample_2.csv is a fresh uniform sample of current sticker names (ids not in the first sample), labelled
after the fixes and never used to make them: its rate (with a 95 % Wilson interval) is the independent estimate.
Columns: id, name, ok (1/0), note ('borderline: ...' marks judgement calls).
review_sample_3.csv: a third uniform sample of 300 current names (ids in neither earlier sample; numpy
default_rng(3003) over the sorted ids), drawn after the scene-tile, '-ing' and several-things rules and
labelled the same way; its bad names are left unfixed so that it stays a measurement.
"""

import csv
import math
import sys
from pathlib import Path

path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "collage/assets/names/review_sample.csv")
rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
print(f"{len(rows)} sampled sticker ids ({path.name})")
for col, label in (("old_ok", "before (old names)"), ("first_new_ok", "after, first pass"), ("new_ok", "after (current)")):
    labelled = [r[col] for r in rows if r[col] != ""]
    bad = labelled.count("0")
    print(f"{label:22s} {bad:4d} bad / {len(labelled):4d} named = {100 * bad / max(1, len(labelled)):5.1f} %")


def wilson(bad: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion bad / n."""
    if n == 0:
        return 0.0, 1.0
    p = bad / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def report_fresh(fresh: Path, label: str) -> None:
    rows2 = [r for r in csv.DictReader(open(fresh, newline="", encoding="utf-8")) if r["ok"] != ""]
    bad2 = [r for r in rows2 if r["ok"] == "0"]
    lo, hi = wilson(len(bad2), len(rows2))
    print(f"\n{label} ({fresh.name})")
    print(f"{'current names':22s} {len(bad2):4d} bad / {len(rows2):4d} labelled = {100 * len(bad2) / max(1, len(rows2)):5.1f} %"
          f"  (95 % Wilson {100 * lo:.1f} - {100 * hi:.1f} %)")
    clear = [r for r in bad2 if not r["note"].startswith("borderline")]
    lo, hi = wilson(len(clear), len(rows2))
    print(f"{'  without borderline':22s} {len(clear):4d} bad / {len(rows2):4d} labelled = {100 * len(clear) / max(1, len(rows2)):5.1f} %"
          f"  (95 % Wilson {100 * lo:.1f} - {100 * hi:.1f} %)")


NAMES = Path(__file__).resolve().parents[1] / "collage/assets/names"
fresh = Path(sys.argv[2] if len(sys.argv) > 2 else NAMES / "review_sample_2.csv")
if fresh.exists():
    report_fresh(fresh, "independent of the fixes: fresh sample of current names")
third = Path(sys.argv[3] if len(sys.argv) > 3 else NAMES / "review_sample_3.csv")
if third.exists():
    report_fresh(third, "third sample, after the image and phrasing rules (ids not in samples 1-2, default_rng(3003))")
