"""Real background pictures from Debian's desktop wallpaper packages, named by a reviewed list.

Four packages ship free wallpapers (photos and digital art) that install offline:

- plasma-workspace-wallpapers (KDE, `/usr/share/wallpapers/<Name>/contents/images[_dark]/<W>x<H>.<ext>`):
  one picture in many resolutions; only the largest raster file of each `images` / `images_dark` folder is
  used. Licence and author come from the wallpaper's `metadata.json` (LGPL-3 or CC-BY-SA-4.0), else the
  package's debian/copyright (GPL-2+).
- mate-backgrounds (`/usr/share/backgrounds/mate/{abstract,desktop,nature}/`): `X_3840x2160.jpg` and `X.jpg`
  are one picture; the largest is used. Licence and authors per file from its DEP-5 debian/copyright
  (GPL-2+, CC-BY-SA-4.0 for the Ubuntu MATE ones).
- gnome-backgrounds (`/usr/share/backgrounds/gnome/*.webp`; the SVGs are left out: raster only). Light
  (`-l`) and dark (`-d`) variants are separate pictures unless the near-duplicate check says otherwise.
- ukui-wallpapers (`/usr/share/backgrounds/*.jpg|png`, top level only): CC-BY-SA-3.0.

Every picture is named by `names/wallpapers.csv` (id, keep, name, kind, reason), written by looking at each
one: `keep=no` rows (logos, text, mascots, desktop branding, transparency) are dropped, and a picture the list
does not hold is left out with a note, so a package update cannot add an unnamed picture. `kind` says whether
it is a photo or digital art; an art name says its medium ("… illustration", "… painting", "abstract art
of …") so that `words.photo_phrase` does not call it a photo.

Near-duplicates: among all background pictures (the scikit-image photos first, then these, in package and id
order) a picture whose 32×32 grey thumbnail of its full frame correlates above NEAR_DUPLICATE_CORR with an
earlier kept one is dropped (`near_duplicates`).
"""

from __future__ import annotations

import csv
import functools
import json
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from .manifest import sha256_file

NAMES_CSV = Path(__file__).resolve().parent / "names" / "wallpapers.csv"
DOC_ROOT = Path("/usr/share/doc")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
NEAR_DUPLICATE_CORR = 0.98
THUMB_SIDE = 32

# source → (id prefix, licence of the package as a whole: what a picture its copyright file does not list gets)
PACKAGES = {
    "deb:plasma-workspace-wallpapers": ("plasma", "GPL-2+"),
    "deb:mate-backgrounds": ("mate", "GPL-2+"),
    "deb:gnome-backgrounds": ("gnome", "GPL-2+"),
    "deb:ukui-wallpapers": ("ukui", "CC-BY-SA-3.0"),
}


@dataclass(frozen=True)
class Candidate:
    """One picture a package ships: its manifest id and its file (relative to the package root)."""

    id: str
    rel: str


@dataclass(frozen=True)
class Entry:
    """One reviewed row of names/wallpapers.csv."""

    id: str
    keep: bool
    name: str
    kind: str    # photo | art
    reason: str


# --- finding the pictures ------------------------------------------------------------------------------

_SIZE_NAME = re.compile(r"(\d+)x(\d+)")


def _pixels(path: Path) -> int:
    match = _SIZE_NAME.fullmatch(path.stem)
    if match:
        return int(match[1]) * int(match[2])
    try:
        with Image.open(path) as im:
            return im.size[0] * im.size[1]
    except Exception:
        return 0


def _largest(paths: Iterable[Path]) -> Path | None:
    """The file with the most pixels (ties: the name that sorts first)."""
    return max(sorted(paths), key=_pixels, default=None)


def _rasters(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES) \
        if folder.is_dir() else []


def plasma_candidates(root: Path) -> list[Candidate]:
    found = []
    for wallpaper in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for folder, suffix in (("images", ""), ("images_dark", "-dark")):
            best = _largest(_rasters(wallpaper / "contents" / folder))
            if best is not None:
                found.append(Candidate(f"plasma:{wallpaper.name}{suffix}", best.relative_to(root).as_posix()))
    return found


_RESOLUTION_SUFFIX = re.compile(r"_\d+x\d+$")


def mate_candidates(root: Path) -> list[Candidate]:
    groups: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in _rasters(folder):
            key = f"{folder.name}/{_RESOLUTION_SUFFIX.sub('', path.stem)}"
            groups.setdefault(key, []).append(path)
    return [Candidate(f"mate:{key}", _largest(paths).relative_to(root).as_posix()) for key, paths in sorted(groups.items())]


def flat_candidates(prefix: str, root: Path) -> list[Candidate]:
    """gnome and ukui: every raster file directly in the root (no sub-folders), by its stem."""
    return [Candidate(f"{prefix}:{p.stem}", p.name) for p in _rasters(root)]


def candidates(source: str, root: Path) -> list[Candidate]:
    """The pictures of one package installed under `root`, by id (before the names list is applied)."""
    prefix = PACKAGES[source][0]
    if prefix == "plasma":
        return plasma_candidates(root)
    if prefix == "mate":
        return mate_candidates(root)
    return flat_candidates(prefix, root)



# --- licences ------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"\s*<[^>]*>|\s*\S+@\S+|\s*https?://\S+")
_YEARS = re.compile(r"^(?:copyright\s*)?(?:©\s*)?[\d ,\-–]*\s*", re.I)
CC_NAMES = (  # licence text in a copyright file → SPDX id
    ("attribution-sharealike 4.0", "CC-BY-SA-4.0"), ("attribution-sharealike 3.0", "CC-BY-SA-3.0"),
    ("attribution-sharealike 2.0", "CC-BY-SA-2.0"), ("attribution 4.0", "CC-BY-4.0"), ("attribution 3.0", "CC-BY-3.0"),
    ("attribution 2.0", "CC-BY-2.0"),
)
KDE_LICENSES = {"LGPLv3": "LGPL-3.0", "LGPLv3+": "LGPL-3.0-or-later", "LGPLv2+": "LGPL-2.0-or-later",
                "GPLv2+": "GPL-2.0-or-later", "GPLv3+": "GPL-3.0-or-later"}


def _holders(text: str) -> str:
    """'2008, Charles Barbin <barbinch@free.fr>' lines → 'Charles Barbin' (years, e-mails and links removed)."""
    names = []
    for line in text.splitlines():
        line = _EMAIL.sub("", _YEARS.sub("", line.strip())).strip(" ,´'\"")
        if line and line not in names and "no copyright" not in line.lower():
            names.append(line)
    return ", ".join(names)


def dep5_paragraphs(text: str) -> list[dict[str, str]]:
    """The paragraphs of a machine-readable (DEP-5) debian/copyright file: {field (lower case): value}."""
    paragraphs, current, field = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, field = {}, None
        elif line[0] in " \t" and field:
            current[field] += "\n" + line.strip()
        elif ":" in line:
            field, value = line.split(":", 1)
            field = field.strip().lower()
            current[field] = value.strip()
    return paragraphs


def dep5_license(text: str, rel: str) -> tuple[str, str] | None:
    """(licence, copyright holders) of the file `rel` (upstream path) by the last matching `Files:` paragraph."""
    found = None
    for para in dep5_paragraphs(text):
        patterns = para.get("files", "").split()
        if patterns and "license" in para and any(fnmatchcase(rel, pat) for pat in patterns):
            found = (para["license"].splitlines()[0].strip(), _holders(para.get("copyright", "")))
    return found


def gnome_license(text: str, filename: str) -> tuple[str, str] | None:
    """gnome-backgrounds' free-form copyright file: an "Image Authors:" list of `- pattern:` lines, each group
    followed by its Copyright and "Licensed under …" lines. (licence, holders) of `filename`, or None."""
    groups, patterns, copyright_, closed = [], [], [], False
    section = text.split("Image Authors:", 1)[-1].split("\nLicenses:", 1)[0]
    for raw in section.splitlines():
        line = raw.strip()
        if line.startswith("- "):
            if closed:
                patterns, copyright_, closed = [], [], False
            patterns.append(line[2:].strip().rstrip(":"))
        elif line.lower().startswith("copyright"):
            copyright_.append(line)
        elif line.lower().startswith("licensed under"):
            lower = line.lower()
            spdx = next((spdx for key, spdx in CC_NAMES if key in lower.replace("-share alike", "-sharealike")), None)
            groups.append((list(patterns), spdx or line[len("licensed under"):].strip(" ."), _holders("\n".join(copyright_))))
            closed = True
    for pats, license_, holders in groups:
        if any(fnmatchcase(filename, pat) or fnmatchcase(Path(filename).stem, Path(pat).stem) for pat in pats):
            return license_, holders
    return None


def _kde_metadata(folder: Path) -> tuple[str, str, str] | None:
    """(licence, author, title) of a Plasma wallpaper from its metadata.json (or older metadata.desktop)."""
    try:
        plugin = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))["KPlugin"]
        authors = ", ".join(a["Name"] for a in plugin.get("Authors", []) if a.get("Name"))
        license_, title = str(plugin.get("License", "")).strip(), str(plugin.get("Name", folder.name))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        try:
            text = (folder / "metadata.desktop").read_text(encoding="utf-8")
        except OSError:
            return None
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and "[" not in line.split("=")[0])
        license_, authors = fields.get("X-KDE-PluginInfo-License", "").strip(), fields.get("X-KDE-PluginInfo-Author", "")
        title = fields.get("Name", folder.name).strip()
    return KDE_LICENSES.get(license_, license_), authors.strip(), title


def license_of(source: str, root: Path, rel: str, doc_root: Path = DOC_ROOT) -> tuple[str, str]:
    """(licence, attribution) of one picture, read from the package: a Plasma wallpaper's metadata.json, else
    its file's entry in /usr/share/doc/<package>/copyright, else the package's licence as a whole."""
    package = source.split(":", 1)[1]
    prefix, package_license = PACKAGES[source]
    copyright_file = doc_root / package / "copyright"
    try:
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if prefix == "plasma":
        meta = _kde_metadata(root / rel.split("/", 1)[0])
        if meta and meta[0]:
            return meta[0], f"{meta[2]} by {meta[1] or 'KDE contributors'} ({package})"
    found = gnome_license(text, Path(rel).name) if prefix == "gnome" else dep5_license(text, rel)
    license_, holders = found if found and found[0] else (package_license, "")
    if prefix == "gnome" and not found:  # e.g. grid, truchet: the file names only the older pictures
        holders = "GNOME Backgrounds contributors; not listed by name in debian/copyright, under the package's licence"
    return license_, f"{holders or _default_holders(text) or package} ({package})"


def _default_holders(text: str) -> str:
    """The holders of a DEP-5 file's `Files: *` paragraph (ukui, plasma), or ''."""
    for para in dep5_paragraphs(text):
        if para.get("files", "").split() == ["*"]:
            return _holders(para.get("copyright", ""))
    return ""


# --- the reviewed names --------------------------------------------------------------------------------

_NAME = re.compile(r"[a-z]+(?:['-][a-z]+)*(?: [a-z]+(?:['-][a-z]+)*)*")


@functools.lru_cache(maxsize=4)
def load_names(path: Path = NAMES_CSV) -> dict[str, Entry]:
    """names/wallpapers.csv by id; a malformed row raises ValueError (the list is reviewed by hand)."""
    entries: dict[str, Entry] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line, r in enumerate(csv.DictReader(f), start=2):
            entry = Entry((r.get("id") or "").strip(), (r.get("keep") or "").strip() == "yes",
                          (r.get("name") or "").strip(), (r.get("kind") or "").strip(), (r.get("reason") or "").strip())
            problem = ("no id" if not entry.id else
                       "a repeated id" if entry.id in entries else
                       f"keep {r.get('keep')!r}: use yes or no" if (r.get("keep") or "").strip() not in ("yes", "no") else
                       f"kind {entry.kind!r}: use photo or art" if entry.kind not in ("photo", "art") else
                       f"name {entry.name!r} is not lower-case words" if entry.keep and not _NAME.fullmatch(entry.name) else
                       "a dropped row needs a reason" if not entry.keep and not entry.reason else None)
            if problem:
                raise ValueError(f"{path}:{line}: {problem}")
            entries[entry.id] = entry
    return entries


# --- the builder ---------------------------------------------------------------------------------------

def wallpaper_rows(note: Callable[[str], None], roots: dict[str, Path] | None = None, doc_root: Path = DOC_ROOT,
                   names: dict[str, Entry] | None = None, earlier: list[dict] | None = None) -> list[dict]:
    """Manifest rows of the reviewed wallpapers of every installed package (`roots`: source → folder, by
    default sources.DEB_ROOTS), less near-duplicates of `earlier` backgrounds (by default the scikit-image
    photos) and of each other. A missing package gives no rows and a note."""
    from . import sources

    roots = {s: sources.DEB_ROOTS[s] for s in PACKAGES} if roots is None else roots
    names = load_names() if names is None else names
    earlier = sources.skimage_rows(lambda _: None) if earlier is None else earlier
    rows, paths = [], {}
    for source, (prefix, _) in PACKAGES.items():
        package, root = source.split(":", 1)[1], roots.get(source)
        found = candidates(source, root) if root is not None and root.is_dir() else []
        if not found:
            note(f"{package} not installed (apt-get install {package}): its wallpapers are skipped")
            continue
        dropped, unlisted, kept = {}, [], {"photo": 0, "art": 0}
        for cand in found:
            entry = names.get(cand.id)
            if entry is None:
                unlisted.append(cand.id)
                continue
            if not entry.keep:
                dropped[entry.reason] = dropped.get(entry.reason, 0) + 1
                continue
            path = root / cand.rel
            try:
                with Image.open(path) as im:
                    width, height = im.size
            except Exception:
                dropped["unreadable"] = dropped.get("unreadable", 0) + 1
                continue
            license_, attribution = license_of(source, root, cand.rel, doc_root)
            rows.append(dict(
                id=cand.id, kind="background", name=entry.name, source=source, path=cand.rel, license=license_,
                attribution=attribution, sha256=sha256_file(path), bytes=path.stat().st_size, width=width,
                height=height, extra=json.dumps({"picture": entry.kind}),
            ))
            paths[cand.id] = path
            kept[entry.kind] += 1
        text = f"wallpapers: {package}: {sum(kept.values())} pictures ({kept['photo']} photos, {kept['art']} art)"
        if dropped:
            text += f"; {sum(dropped.values())} dropped by names/wallpapers.csv"
        if unlisted:
            text += (f"; {len(unlisted)} not in names/wallpapers.csv, left out until reviewed: "
                     + ", ".join(unlisted[:5]) + (" …" if len(unlisted) > 5 else ""))
        note(text)
    earlier = [r for r in earlier if r.get("kind") == "background" and r.get("path")]
    duplicates = near_duplicates(earlier + rows, lambda r: paths.get(r["id"]) or sources.resolve_path(r))
    duplicates = {i: d for i, d in duplicates.items() if i in paths}  # the earlier sets keep theirs
    if duplicates:
        note(f"wallpapers: {len(duplicates)} near-duplicate pictures dropped (grey {THUMB_SIDE}x{THUMB_SIDE} "
             f"correlation > {NEAR_DUPLICATE_CORR}): "
             + ", ".join(f"{i} ~ {other} ({corr:.3f})" for i, (other, corr) in duplicates.items()))
    return [r for r in rows if r["id"] not in duplicates]


# --- near-duplicates -----------------------------------------------------------------------------------

def grey_thumbnail(path: Path, side: int = THUMB_SIDE) -> np.ndarray:
    """The picture's full frame as a (side, side) float grey thumbnail, zero mean and unit norm (all zeros for
    a flat picture), so that the dot product of two is their correlation."""
    with Image.open(path) as im:
        im.draft("RGB", (side * 4, side * 4))  # JPEG: decode at a reduced scale, much faster
        grey = im.convert("RGB").convert("L").resize((side, side), Image.Resampling.BOX)
    v = np.asarray(grey, np.float64).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-9 else v


def near_duplicates(rows: list[dict], path_of: Callable[[dict], Path | None],
                    threshold: float = NEAR_DUPLICATE_CORR) -> dict[str, tuple[str, float]]:
    """{id: (earlier id, correlation)} of the rows (in order) whose grey thumbnail correlates above
    `threshold` with an earlier kept row's. Rows without a readable file are not compared. Two flat
    pictures of one grey level count as duplicates; a flat picture and a textured one do not."""
    kept: list[tuple[str, np.ndarray]] = []
    dropped: dict[str, tuple[str, float]] = {}
    for row in rows:
        path = path_of(row)
        try:
            thumb = grey_thumbnail(path) if path is not None else None
        except Exception:
            thumb = None
        if thumb is None:
            continue
        flat = not thumb.any()
        for other_id, other in kept:
            corr = 1.0 if flat and not other.any() else float(thumb @ other)
            if corr > threshold:
                dropped[row["id"]] = (other_id, corr)
                break
        else:
            kept.append((row["id"], thumb))
    return dropped
