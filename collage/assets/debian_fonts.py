"""The `debian-fonts` set: Latin text faces from Debian font packages, for the t2i text op.

DEBIAN_FONTS names, per package, the faces to use (a regular and a bold or two per family: serif, sans,
display, script / handwriting-like, monospace). Only faces that draw lower case as lower case are listed
(caps-only faces such as Bebas Neue, Humor Sans or Tomson Talks would show "HELLO" for a quoted "hello");
`caps_only` re-checks that at build time, and the asset build's font check (library.check_font) skips a
face lacking a glyph the text op draws. Licence and attribution come from the package's
/usr/share/doc/<pkg>/copyright (machine-readable DEP-5: the `Files: *` stanza's License and Copyright), or
from the table where that file is free-form. A package that is not installed gives no rows and one note.

Rows: kind "font", source "deb:<pkg>", `path` absolute (deb font sources have no root in sources.DEB_ROOTS),
`name` the file's stem, `extra` {"family", "style", "package"}: the text op draws a family first, then one
of its faces, so a family with three faces is not drawn three times as often.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from .manifest import sha256_file

DPKG_INFO = Path("/var/lib/dpkg/info")
DOC = Path("/usr/share/doc")

# package: (family → face file names, licence when the copyright file is free-form, style)
DEBIAN_FONTS: dict[str, tuple[dict[str, tuple[str, ...]], str | None, str]] = {
    # sans
    "fonts-lato": ({"Lato": ("Lato-Regular.ttf", "Lato-Bold.ttf", "Lato-Black.ttf", "Lato-Italic.ttf")}, None, "sans"),
    "fonts-roboto-unhinted": ({"Roboto": ("Roboto-Regular.ttf", "Roboto-Bold.ttf", "Roboto-Black.ttf"),
                               "Roboto Condensed": ("RobotoCondensed-Regular.ttf", "RobotoCondensed-Bold.ttf")},
                              None, "sans"),
    "fonts-cantarell": ({"Cantarell": ("Cantarell-Regular.otf", "Cantarell-Bold.otf")}, None, "sans"),
    "fonts-comfortaa": ({"Comfortaa": ("Comfortaa-Regular.ttf", "Comfortaa-Bold.ttf")}, None, "sans"),
    "fonts-crosextra-carlito": ({"Carlito": ("Carlito-Regular.ttf", "Carlito-Bold.ttf")}, None, "sans"),
    "fonts-inter": ({"Inter": ("Inter-Regular.otf", "Inter-Bold.otf", "Inter-Black.otf")}, None, "sans"),
    "fonts-league-spartan": ({"League Spartan": ("LeagueSpartan-Regular.otf", "LeagueSpartan-Bold.otf",
                                                 "LeagueSpartan-Black.otf")}, None, "sans"),
    "fonts-cabin": ({"Cabin": ("Cabin-Regular.otf", "Cabin-Bold.otf")}, None, "sans"),
    "fonts-dosis": ({"Dosis": ("Dosis-Book.otf", "Dosis-Bold.otf")}, None, "sans"),
    "fonts-sora": ({"Sora": ("Sora-Regular.otf", "Sora-Bold.otf")}, None, "sans"),
    "fonts-manrope": ({"Manrope": ("Manrope-Regular.ttf", "Manrope-ExtraBold.ttf")}, None, "sans"),
    "fonts-jura": ({"Jura": ("Jura-Regular.otf", "Jura-Bold.otf")}, "OFL-1.1 or GPL-3+", "sans"),
    "fonts-play": ({"Play": ("Play-Regular.ttf", "Play-Bold.ttf")}, None, "sans"),
    "fonts-oxygen": ({"Oxygen Sans": ("Oxygen-Sans.ttf", "Oxygen-Sans-Bold.ttf")}, None, "sans"),
    "fonts-freefont-ttf": ({"FreeSans": ("FreeSans.ttf", "FreeSansBold.ttf"),
                            "FreeSerif": ("FreeSerif.ttf", "FreeSerifBold.ttf"),
                            "FreeMono": ("FreeMono.ttf", "FreeMonoBold.ttf")},
                           "GPL-3+ with Special Font Exception", "sans"),
    "fonts-go": ({"Go": ("Go-Regular.ttf", "Go-Bold.ttf"), "Go Mono": ("Go-Mono.ttf", "Go-Mono-Bold.ttf")},
                 None, "sans"),
    "fonts-adf-gillius": ({"Gillius ADF": ("GilliusADF-Regular.otf", "GilliusADF-Bold.otf")}, None, "sans"),
    "fonts-beteckna": ({"Beteckna GS": ("BetecknaGS.ttf", "BetecknaGS-Bold.ttf")}, None, "sans"),
    # serif
    "fonts-crosextra-caladea": ({"Caladea": ("Caladea-Regular.ttf", "Caladea-Bold.ttf")}, None, "serif"),
    "fonts-linuxlibertine": ({"Linux Libertine": ("LinLibertine_R.otf", "LinLibertine_RB.otf", "LinLibertine_RI.otf"),
                              "Linux Biolinum": ("LinBiolinum_R.otf", "LinBiolinum_RB.otf")}, None, "serif"),
    "fonts-ebgaramond": ({"EB Garamond": ("EBGaramond12-Regular.otf", "EBGaramond12-Bold.otf")}, None, "serif"),
    "fonts-vollkorn": ({"Vollkorn": ("Vollkorn-Regular.ttf", "Vollkorn-Bold.ttf", "Vollkorn-Black.ttf")}, None, "serif"),
    "fonts-roboto-slab": ({"Roboto Slab": ("RobotoSlab-Regular.otf", "RobotoSlab-Bold.otf")}, None, "serif"),
    "fonts-oldstandard": ({"Old Standard": ("OldStandard-Regular.ttf", "OldStandard-Bold.ttf")}, "OFL-1.0", "serif"),
    "fonts-cardo": ({"Cardo": ("Cardo104s.ttf", "Cardob101.ttf")}, None, "serif"),
    "fonts-goudybookletter": ({"Goudy Bookletter 1911": ("GoudyBookletter1911.otf",)}, None, "serif"),
    "fonts-lindenhill": ({"Linden Hill": ("LindenHill.otf",)}, None, "serif"),
    "fonts-fanwood": ({"Fanwood": ("FanwoodText.otf",)}, None, "serif"),
    "fonts-prociono": ({"Prociono": ("Prociono.otf",)}, None, "serif"),
    "fonts-quattrocento": ({"Quattrocento": ("Quattrocento-Regular.otf",)}, None, "serif"),
    "fonts-averia-serif-gwf": ({"Averia Serif": ("AveriaSerifGWF-Regular.ttf", "AveriaSerifGWF-Bold.ttf")},
                               None, "serif"),
    "fonts-adf-accanthis": ({"Accanthis ADF": ("AccanthisADFStd-Regular.otf", "AccanthisADFStd-Bold.otf")},
                            None, "serif"),
    "fonts-adf-baskervald": ({"Baskervald ADF": ("BaskervaldADFStd.otf", "BaskervaldADFStd-Bold.otf")}, None, "serif"),
    "fonts-sil-gentium-basic": ({"Gentium Basic": ("GenBasR.ttf", "GenBasB.ttf")}, None, "serif"),
    # display
    "fonts-lobster": ({"Lobster": ("lobster.otf",)}, None, "display"),
    "fonts-yanone-kaffeesatz": ({"Yanone Kaffeesatz": ("YanoneKaffeesatz-Regular.otf", "YanoneKaffeesatz-Bold.otf")},
                                None, "display"),
    "fonts-staypuft": ({"Stay Puft": ("StayPuft.ttf",)}, None, "display"),
    "fonts-blankenburg": ({"Blankenburg": ("Blankenburg_UNZ1A.ttf",)}, None, "display"),
    "fonts-leckerli-one": ({"Leckerli One": ("LeckerliOne-Regular.ttf",)}, None, "display"),
    # script, handwriting-like
    "fonts-dancingscript": ({"Dancing Script": ("DancingScript-Regular.otf", "DancingScript-Bold.otf")},
                            None, "script"),
    "fonts-comic-neue": ({"Comic Neue": ("ComicNeue-Regular.otf", "ComicNeue-Bold.otf")}, None, "handwriting"),
    "fonts-breip": ({"Breip": ("Breip.ttf",)}, None, "handwriting"),
    "fonts-rufscript": ({"Rufscript": ("Rufscript010.ttf",)}, None, "handwriting"),
    # monospace
    "fonts-firacode": ({"Fira Code": ("FiraCode-Regular.ttf", "FiraCode-Bold.ttf")}, None, "monospace"),
    "fonts-inconsolata": ({"Inconsolata": ("Inconsolata.otf",)}, "OFL-1.0", "monospace"),
    "fonts-courier-prime": ({"Courier Prime": ("Courier Prime.otf", "Courier Prime Bold.otf")}, None, "monospace"),
    "fonts-jetbrains-mono": ({"JetBrains Mono": ("JetBrainsMono-Regular.ttf", "JetBrainsMono-Bold.ttf")},
                             None, "monospace"),
    "fonts-noto-mono": ({"Noto Sans Mono": ("NotoSansMono-Regular.ttf", "NotoSansMono-Bold.ttf")}, None, "monospace"),
}
STYLE_OVERRIDES = {"FreeSerif": "serif", "FreeMono": "monospace", "Go Mono": "monospace", "Linux Biolinum": "sans"}
# where the `Files: *` stanza is the sources' licence and the fonts carry another
LICENSE_OVERRIDES = {"fonts-freefont-ttf": "GPL-3+ with Special Font Exception"}
LICENSE_NAMES = {"SIL-OFL-1.1": "OFL-1.1", "SIL Open Font License": "OFL-1.1", "Apache-2": "Apache-2.0",
                 "GPL-2+FE": "GPL-2+ with font exception"}


def package_files(package: str) -> dict[str, Path]:
    """{file name: path} of the .ttf/.otf files an installed package holds (dpkg's file list), {} if none."""
    listing = DPKG_INFO / f"{package}.list"
    if not listing.is_file():
        return {}
    out = {}
    for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
        path = Path(line.strip())
        if path.suffix.lower() in (".ttf", ".otf") and path.is_file():
            out.setdefault(path.name, path)
    return out


def copyright_license(package: str) -> tuple[str | None, str | None]:
    """(licence, copyright holders) of the `Files: *` stanza of a DEP-5 copyright file, (None, None) if the
    file is free-form or absent."""
    path = DOC / package / "copyright"
    if not path.is_file():
        return None, None
    text = path.read_text(encoding="utf-8", errors="replace")
    if not re.search(r"^Format:", text, re.M):
        return None, None
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in stanza.splitlines():
            match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if match:
                key = match.group(1).lower()
                fields[key] = [match.group(2).strip()]
            elif key and line.startswith((" ", "\t")):
                fields[key].append(line.strip())
        if fields.get("files", [""])[0].split() == ["*"] and "license" in fields:
            license_ = fields["license"][0] or None
            holders = [h for h in fields.get("copyright", []) if h]
            holders = [re.sub(r"\s*<[^>]*>|\s*\(?https?://\S+\)?|^copyright\s*(\(c\)|©)?\s*", "", h, flags=re.I)
                       for h in holders]
            return LICENSE_NAMES.get(license_, license_), "; ".join(h.strip(" ,.") for h in holders if h)[:160] or None
    return None, None


def caps_only(path: Path) -> bool:
    """Whether the face draws lower-case letters as its capitals (or small capitals of the same shape)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(path), 48)

    def shape(text: str) -> np.ndarray:
        image = Image.new("L", (200, 120))
        ImageDraw.Draw(image).text((20, 20), text, fill=255, font=font)
        pixels = np.asarray(image) > 127
        ys, xs = np.nonzero(pixels)
        if len(xs) == 0:
            return pixels[:0, :0]
        crop = Image.fromarray((pixels[ys.min():ys.max() + 1, xs.min():xs.max() + 1] * 255).astype(np.uint8))
        return np.asarray(crop.resize((24, 24))) > 127

    same = [np.mean(shape(c) == shape(c.upper())) > 0.93 for c in "aegr"]
    return all(same)


def debian_font_rows(note: Callable[[str], None]) -> list[dict]:
    rows, missing = [], []
    for package, (families, fallback_license, style) in DEBIAN_FONTS.items():
        files = package_files(package)
        if not files:
            missing.append(package)
            continue
        license_, holders = copyright_license(package)
        license_ = LICENSE_OVERRIDES.get(package) or license_ or fallback_license or f"see /usr/share/doc/{package}/copyright"
        for family, faces in families.items():
            for face in faces:
                path = files.get(face)
                if path is None:
                    note(f"debian-fonts: {package} has no {face}: skipped")
                    continue
                try:
                    if caps_only(path):
                        note(f"debian-fonts: {face} draws lower case as capitals: skipped")
                        continue
                except OSError as exc:
                    note(f"debian-fonts: {face} does not open ({exc}): skipped")
                    continue
                by = f" by {holders}" if holders else ""
                rows.append(dict(
                    id=f"font:deb:{path.stem}", kind="font", name=path.stem.replace(" ", "-"), source=f"deb:{package}",
                    path=str(path), license=license_, attribution=f"{family}{by} (Debian {package})",
                    sha256=sha256_file(path), bytes=path.stat().st_size, width=None, height=None,
                    extra=json.dumps({"family": family, "style": STYLE_OVERRIDES.get(family, style),
                                      "package": package}),
                ))
    if missing:
        note(f"debian-fonts: {len(missing)} of {len(DEBIAN_FONTS)} font packages not installed "
             f"(apt-get install {' '.join(missing)}): their faces are skipped")
    return rows
