#!/usr/bin/env python3
"""Convert the spectral data Spectral Studio ships into plain CSV files under assets/.

Run from the repository root:

    /work/pyenv/bin/python scripts/make_assets.py [--colorimetry-src DIR]

Sources (all read from installed registry packages, nothing downloaded here):
  * colour-science (PyPI, BSD-3-Clause): cameras, Dyer 2017 basis, CIE 1931 CMFs,
    illuminants, ColorChecker and rawtoaces 190-patch reflectances;
  * pvlib (PyPI, BSD-3-Clause): ASTM G173-03 reference solar spectrum;
  * earthlib (PyPI, MIT): the Earth Library of 7261 reflectance spectra;
  * colorimetry (crates.io, MIT OR Apache-2.0): 1269 matte Munsell chips, parsed from its
    Rust source file src/colorant/munsell/data.rs (found in ~/.cargo/registry after
    `cargo fetch` of a throw-away project that depends on `colorimetry`).

The script is deterministic: running it twice gives byte-identical files. It also writes
assets/SOURCES.md, which says where every file came from and what was done to it.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata as md
import os
import re
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "assets")
GRID = np.arange(400, 701, 10, dtype=float)  # the studio's default grid

sources: list[tuple[str, str, str, str, str]] = []  # (file, origin, licence, conversion, rows)


def fmt(v: float, digits: int = 6) -> str:
    """Shortest text of v with `digits` significant digits (no trailing zeros)."""
    if v == 0 or not np.isfinite(v):
        return "0"
    s = f"{v:.{digits}g}"
    if "e" in s:  # keep plain decimal notation, simpler for any CSV reader
        s = f"{v:.{digits + 6}f}".rstrip("0").rstrip(".")
    return s


def write_csv(rel: str, header: list[str], rows: list[list[str]]) -> None:
    path = os.path.join(ASSETS, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="\n") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def curve_rows(wl: np.ndarray, cols: np.ndarray, digits: int = 6) -> list[list[str]]:
    return [[fmt(w, 6)] + [fmt(v, digits) for v in c] for w, c in zip(wl, cols)]


def note(rel, origin, licence, conversion):
    sources.append((rel, origin, licence, conversion))


def ver(pkg: str) -> str:
    return md.version(pkg)


# --------------------------------------------------------------------------- colour-science
def colour_assets() -> None:
    import colour
    from colour.characterisation import MSDS_CAMERA_SENSITIVITIES
    from colour.recovery.datasets.dyer2017 import BASIS_FUNCTIONS_DYER2017

    cv = f"colour-science {ver('colour-science')}"
    bsd = "BSD-3-Clause (colour-science); data © their authors as cited by colour"
    base = os.path.dirname(colour.__file__)

    # Canon EOS 5D Mark II: the rawtoaces (AMPAS) measurement shipped inside colour.
    canon_csv = os.path.join(base, "characterisation/datasets/rawtoaces/CANON_EOS_5DMark_II_RGB_Sensitivities.csv")
    data = np.genfromtxt(canon_csv, delimiter=",", names=True)
    wl = data["wavelength"]
    rgb = np.stack([data["R"], data["G"], data["B"]], axis=1)
    write_csv("cameras/canon_eos_5d_mark_ii.csv", ["wavelength", "r", "g", "b"], curve_rows(wl, rgb))
    note(
        "cameras/canon_eos_5d_mark_ii.csv",
        f"{cv}, file colour/characterisation/datasets/rawtoaces/CANON_EOS_5DMark_II_RGB_Sensitivities.csv "
        "(rawtoaces utility data, Dyer et al. 2017, AMPAS)",
        bsd,
        f"copied as is on its native grid {wl[0]:g}–{wl[-1]:g} nm step {wl[1]-wl[0]:g}; columns renamed r,g,b",
    )

    # Nikon 5100: the NPL measurement (Darrodi et al. 2015), colour's 'Nikon 5100 (NPL)'.
    nikon = MSDS_CAMERA_SENSITIVITIES["Nikon 5100 (NPL)"]
    write_csv("cameras/nikon_5100.csv", ["wavelength", "r", "g", "b"], curve_rows(nikon.wavelengths, nikon.values))
    note(
        "cameras/nikon_5100.csv",
        f"{cv}, colour.characterisation.MSDS_CAMERA_SENSITIVITIES['Nikon 5100 (NPL)'] "
        "(Darrodi, Finlayson, Goodman, Mackiewicz 2015, NPL reference data set)",
        bsd,
        f"native grid {nikon.wavelengths[0]:g}–{nikon.wavelengths[-1]:g} nm step 5, values as in colour "
        "(each channel peaks at 1)",
    )

    # Dyer 2017 camera-sensitivity basis: (6 functions, 31 wavelengths, 3 channels).
    basis = np.asarray(BASIS_FUNCTIONS_DYER2017)
    header = ["wavelength"] + [f"{ch}{k + 1}" for ch in "rgb" for k in range(basis.shape[0])]
    cols = np.concatenate([basis[:, :, c].T for c in range(3)], axis=1)  # (31, 18)
    write_csv("cameras/dyer2017_basis.csv", header, curve_rows(GRID, cols, 9))
    note(
        "cameras/dyer2017_basis.csv",
        f"{cv}, colour.recovery.datasets.dyer2017.BASIS_FUNCTIONS_DYER2017 (Dyer et al. 2017, RAW to ACES Utility Data; "
        "the basis of Jiang et al. 2013 camera-sensitivity recovery)",
        bsd,
        "400–700 nm step 10; columns r1..r6, g1..g6, b1..b6 = basis function k of channel r/g/b",
    )

    # CIE 1931 2° colour-matching functions, 380–780 nm at 1 nm.
    cmf = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]
    sel = (cmf.wavelengths >= 380) & (cmf.wavelengths <= 780)
    write_csv("cie/cie1931_2deg.csv", ["wavelength", "x", "y", "z"], curve_rows(cmf.wavelengths[sel], cmf.values[sel], 7))
    note(
        "cie/cie1931_2deg.csv",
        f"{cv}, colour.MSDS_CMFS['CIE 1931 2 Degree Standard Observer'] (CIE, via CVRL)",
        bsd,
        "cut to 380–780 nm (1 nm step); values unchanged",
    )

    # Illuminants: native 5 nm grid cut to 380–780, normalised to a maximum of 1.
    for key, fname in [("D65", "d65"), ("A", "a"), ("FL2", "f2"), ("FL11", "f11"), ("LED-B3", "led-b3")]:
        sd = colour.SDS_ILLUMINANTS[key]
        sel = (sd.wavelengths >= 380) & (sd.wavelengths <= 780)
        wl, v = sd.wavelengths[sel], sd.values[sel]
        v = v / v.max()
        write_csv(f"illuminants/{fname}.csv", ["wavelength", "value"], curve_rows(wl, v[:, None]))
        note(
            f"illuminants/{fname}.csv",
            f"{cv}, colour.SDS_ILLUMINANTS['{key}'] (CIE 015:2018 tables)",
            bsd,
            "cut to 380–780 nm (5 nm step) and divided by its maximum over that range (peak = 1)",
        )

    # CIE daylight basis S0, S1, S2: any correlated colour temperature 4000-25000 K is
    # S0 + M1 S1 + M2 S2 (CIE 015); the studio computes M1, M2 from the CCT.
    from colour.colorimetry.datasets.illuminants import SDS_BASIS_FUNCTIONS_CIE_ILLUMINANT_D_SERIES as DB

    wl = DB["S0"].wavelengths
    sel = (wl >= 380) & (wl <= 780)
    cols = np.stack([DB[k].values[sel] for k in ("S0", "S1", "S2")], axis=1)
    write_csv("illuminants/cie_daylight_basis.csv", ["wavelength", "s0", "s1", "s2"], curve_rows(wl[sel], cols))
    note(
        "illuminants/cie_daylight_basis.csv",
        f"{cv}, colour.colorimetry.datasets.illuminants.SDS_BASIS_FUNCTIONS_CIE_ILLUMINANT_D_SERIES (CIE 015:2018, "
        "the S0, S1, S2 components of daylight)",
        bsd,
        "cut to 380–780 nm (5 nm step); values unchanged (not normalised: the studio mixes them, then scales)",
    )

    # ColorChecker: BabelColor average (2005), 24 patches, 380–730 nm step 10 → 400–700.
    cc = colour.SDS_COLOURCHECKERS["BabelColor Average"]
    names = list(cc.keys())
    spectra = np.array([[cc[n][w] for w in GRID] for n in names])
    write_library("libraries/colorchecker.csv", names, ["colorchecker"] * len(names), spectra)
    note(
        "libraries/colorchecker.csv",
        f"{cv}, colour.SDS_COLOURCHECKERS['BabelColor Average'] (Pascale 2005, BabelColor ColorChecker average)",
        bsd,
        "24 patches in chart order (row 1 left → row 4 right); native 10 nm samples at 400–700 nm kept",
    )

    # rawtoaces 190 training patches, 380–780 step 5 → 400–700 step 10 (every other sample).
    p190 = os.path.join(base, "characterisation/datasets/rawtoaces/190_Patches.csv")
    with open(p190) as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(p190, delimiter=",", skiprows=1)
    idx = [int(np.argmin(np.abs(data[:, 0] - w))) for w in GRID]
    spectra = np.clip(data[idx, 1:].T, 0.0, None)  # tiny negative round-off (-7e-18) → 0
    write_library("libraries/rawtoaces190.csv", header[1:], ["rawtoaces-190"] * len(header[1:]), spectra)
    note(
        "libraries/rawtoaces190.csv",
        f"{cv}, file colour/characterisation/datasets/rawtoaces/190_Patches.csv (rawtoaces training reflectances)",
        bsd,
        "samples at 400–700 nm step 10 taken from the 5 nm grid; round-off negatives (≈1e-17) set to 0",
    )


# --------------------------------------------------------------------------- pvlib
# Lamps a training scene may be lit by, besides the random ones `train::world` makes. CIE's
# fluorescent and LED tables, less every lamp of the held-out lamps' families: a lamp whose
# spectrum (400–700 nm, 10 nm) has a cosine of at least LAMP_FAMILY_COSINE with FL11 or LED-B3 is
# left out, so the cross-illuminant protocol still shows lamps unlike any the models trained on
# (that drops the three-band fluorescents FL10, FL12 and FL3.7–FL3.11 and LED-B1, B2, B4, B5).
HELD_OUT_LAMPS = ("FL11", "LED-B3")
LAMP_FAMILY_COSINE = 0.94


def cie_lamps() -> None:
    import colour

    cv = f"colour-science {ver('colour-science')}"
    wl10 = np.arange(400, 701, 10)

    def on_grid(key):
        sd = colour.SDS_ILLUMINANTS[key].copy().align(colour.SpectralShape(360, 830, 1))
        v = np.array([sd[w] for w in wl10])
        return v / np.linalg.norm(v)

    held = [on_grid(k) for k in HELD_OUT_LAMPS]
    keys = [k for k in colour.SDS_ILLUMINANTS if k.startswith(("FL", "LED"))]
    kept, dropped = [], []
    for k in keys:
        similarity = max(float(on_grid(k) @ h) for h in held)
        (dropped if similarity >= LAMP_FAMILY_COSINE else kept).append(k)
    grid = colour.SDS_ILLUMINANTS["FL1"].wavelengths
    grid = grid[(grid >= 380) & (grid <= 780)]
    cols = []
    for k in kept:
        sd = colour.SDS_ILLUMINANTS[k]
        if not np.array_equal(sd.wavelengths[(sd.wavelengths >= 380) & (sd.wavelengths <= 780)], grid):
            sd = sd.copy().align(colour.SpectralShape(380, 780, 5))
        sel = (sd.wavelengths >= 380) & (sd.wavelengths <= 780)
        v = sd.values[sel]
        cols.append(v / v.max())
    write_csv("illuminants/cie-lamps.csv", ["wavelength"] + [k.lower() for k in kept], curve_rows(grid, np.stack(cols, axis=1)))
    note(
        "illuminants/cie-lamps.csv",
        f"{cv}, colour.SDS_ILLUMINANTS: the CIE fluorescent (FL1–FL12, FL3.1–FL3.15) and LED (LED-B1–B5, BH1, RGB1, V1, V2) tables (CIE 015:2018)",
        "BSD-3-Clause (colour-science); data © their authors as cited by colour",
        "cut to 380–780 nm (5 nm step), each divided by its maximum (peak = 1); the lamps of the held-out FL11's and LED-B3's families "
        f"(cosine ≥ {LAMP_FAMILY_COSINE} with either over 400–700 nm at 10 nm) are left out: {', '.join(dropped)}",
    )


def astm_g173() -> None:
    import pvlib

    path = os.path.join(os.path.dirname(pvlib.__file__), "data", "ASTMG173.csv")
    data = np.genfromtxt(path, delimiter=",", skip_header=2)
    wl, glob_tilt = data[:, 0], data[:, 2]
    sel = (wl >= 380) & (wl <= 780)
    wl, v = wl[sel], glob_tilt[sel]
    write_csv("illuminants/astm-g173.csv", ["wavelength", "value"], curve_rows(wl, (v / v.max())[:, None]))
    note(
        "illuminants/astm-g173.csv",
        f"pvlib {ver('pvlib')}, file pvlib/data/ASTMG173.csv, column 'global' (ASTM G173-03 global tilt 37°, "
        "W m⁻² nm⁻¹, derived from SMARTS 2.9.2 by NREL)",
        "BSD-3-Clause (pvlib); the ASTM G173 reference spectrum is published by NREL",
        "cut to 380–780 nm on its native grid (0.5 nm below 400 nm, 1 nm above) and divided by its maximum",
    )


# --------------------------------------------------------------------------- earthlib
def earthlib_assets() -> None:
    import earthlib
    import pandas as pd
    import spectral.io.envi as envi

    d = os.path.join(os.path.dirname(earthlib.__file__), "data")
    meta = pd.read_csv(os.path.join(d, "spectra.csv"))
    lib = envi.open(os.path.join(d, "spectra.sli.hdr"))
    wl_nm = np.array(lib.bands.centers) * 1000.0  # header is in micrometres
    spectra = np.asarray(lib.spectra, dtype=float)
    if len(meta) != spectra.shape[0]:
        sys.exit("earthlib metadata and library disagree in length")
    # The metadata table and the .sli header are in the same order; earthlib 1.1.0 spells one
    # name differently in the two ('burnedcham' vs 'burncham'): the table's name is used.
    mismatched = [(a, b) for a, b in zip(meta["NAME"], lib.names) if a != b]
    if len(mismatched) > 5:
        sys.exit(f"earthlib metadata and library disagree: {mismatched[:5]}")
    idx = []
    for w in GRID:
        j = int(np.argmin(np.abs(wl_nm - w)))
        if abs(wl_nm[j] - w) > 0.01:
            sys.exit(f"earthlib has no band at {w} nm")
        idx.append(j)
    vis = spectra[:, idx]
    ignore = float(lib.metadata.get("data ignore value", "nan"))
    ok = np.all(np.isfinite(vis), axis=1) & np.all(vis >= 0, axis=1) & np.all(vis <= 1.5, axis=1)
    if np.isfinite(ignore):
        ok &= ~np.any(vis == ignore, axis=1)
    ok &= vis.max(axis=1) > 0  # an all-zero spectrum is a missing measurement
    categories = [f"{a}/{b}" for a, b in zip(meta["LEVEL_2"], meta["LEVEL_3"])]
    names = list(meta["NAME"])
    keep = np.nonzero(ok)[0]
    write_library(
        "libraries/earthlib.csv",
        [names[i] for i in keep],
        [categories[i] for i in keep],
        vis[keep],
        digits=4,
    )
    dropped = len(names) - len(keep)
    note(
        "libraries/earthlib.csv",
        f"earthlib {ver('earthlib')}, files earthlib/data/spectra.sli(.hdr) + spectra.csv "
        "(Earth Library, C. Anderson; sources: ICRAF-ISRIC soils, ASD urban/NPV spectra, PROSAIL-simulated canopies)",
        "MIT (earthlib)",
        f"bands at 400–700 nm step 10 picked from the 400–2450 nm ENVI library (µm → nm); "
        f"{dropped} spectra with missing/invalid values in 400–700 nm dropped, {len(keep)} kept; "
        "category = LEVEL_2/LEVEL_3 of earthlib's metadata (e.g. vegetation/canopy, bare/soil, built/road); "
        "4 significant digits; names from spectra.csv (where the .sli header spells one differently: "
        + ", ".join(f"{a!r} vs {b!r}" for a, b in mismatched) + ")",
    )


# --------------------------------------------------------------------------- earthlib, full range
INSS_LIBRARY_SIZE = 345  # as the INSS paper's USGS subset


def earthlib_wide_assets() -> None:
    """The INSS library: INSS_LIBRARY_SIZE earthlib spectra over earthlib's whole range
    (400-2450 nm, its native 10 nm grid, water-vapour gaps as earthlib has them), chosen to
    cover the library: k-means (k-means++ seeding, numpy seed 0, 50 Lloyd iterations) on the
    spectra scaled to unit L2 norm, then per cluster the member nearest its centre (a real
    spectrum, not a mean). Deterministic."""
    import earthlib
    import pandas as pd
    import spectral.io.envi as envi

    d = os.path.join(os.path.dirname(earthlib.__file__), "data")
    meta = pd.read_csv(os.path.join(d, "spectra.csv"))
    lib = envi.open(os.path.join(d, "spectra.sli.hdr"))
    wl_nm = np.round(np.array(lib.bands.centers) * 1000.0, 3)
    spectra = np.asarray(lib.spectra, dtype=float)
    ok = np.all(np.isfinite(spectra), axis=1) & np.all(spectra >= 0, axis=1) & np.all(spectra <= 1.5, axis=1) & (spectra.max(axis=1) > 0)
    keep = np.nonzero(ok)[0]
    x = spectra[keep] / np.linalg.norm(spectra[keep], axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    k = INSS_LIBRARY_SIZE
    centres = [x[rng.integers(len(x))]]
    dist = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        centres.append(x[rng.choice(len(x), p=dist / dist.sum())])
        dist = np.minimum(dist, np.sum((x - centres[-1]) ** 2, axis=1))
    c = np.array(centres)
    for _ in range(50):
        d2 = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
        label = d2.argmin(axis=1)
        for j in range(k):
            members = x[label == j]
            if len(members):
                c[j] = members.mean(axis=0)
    d2 = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
    label = d2.argmin(axis=1)
    chosen = []
    for j in range(k):
        members = np.nonzero(label == j)[0]
        if len(members):
            chosen.append(members[np.argmin(d2[members, j])])
    chosen = sorted(set(int(keep[i]) for i in chosen))
    names = [meta["NAME"][i] for i in chosen]
    categories = [f"{meta['LEVEL_2'][i]}/{meta['LEVEL_3'][i]}" for i in chosen]
    for n in names:
        if "," in n or '"' in n:
            sys.exit(f"spectrum name with a comma or quote: {n!r}")
    header = ["name", "category"] + [fmt(w) for w in wl_nm]
    rows = [[n, cat] + [fmt(v, 4) for v in spectra[i]] for n, cat, i in zip(names, categories, chosen)]
    write_csv("libraries/earthlib-wide.csv", header, rows)
    counts = pd.Series([c.split("/")[0] for c in categories]).value_counts().to_dict()
    note(
        "libraries/earthlib-wide.csv",
        f"earthlib {ver('earthlib')}, files earthlib/data/spectra.sli(.hdr) + spectra.csv (as libraries/earthlib.csv)",
        "MIT (earthlib)",
        f"INSS's library: {len(chosen)} of earthlib's spectra over its whole range, 400–2450 nm on its native 10 nm grid "
        f"({len(wl_nm)} bands: earthlib leaves out 1360–1450 and 1800–1950 nm), chosen by k-means "
        f"(k = {k}, k-means++ seeding with numpy seed 0, 50 iterations) on the spectra scaled to unit L2 norm, "
        "keeping per cluster the member nearest its centre; by class: "
        + ", ".join(f"{a} {b}" for a, b in sorted(counts.items())) + "; 4 significant digits",
    )


def astm_g173_wide() -> None:
    import pvlib

    path = os.path.join(os.path.dirname(pvlib.__file__), "data", "ASTMG173.csv")
    data = np.genfromtxt(path, delimiter=",", skip_header=2)
    wl, glob_tilt = data[:, 0], data[:, 2]
    peak = glob_tilt[(wl >= 380) & (wl <= 780)].max()
    write_csv("illuminants/astm-g173-wide.csv", ["wavelength", "value"], curve_rows(wl, (glob_tilt / peak)[:, None]))
    note(
        "illuminants/astm-g173-wide.csv",
        f"pvlib {ver('pvlib')}, file pvlib/data/ASTMG173.csv, column 'global' (as illuminants/astm-g173.csv)",
        "BSD-3-Clause (pvlib); the ASTM G173 reference spectrum is published by NREL",
        "the whole table, 280–4000 nm on its native grid (0.5 nm to 400 nm, 1 nm to 1700 nm, 5 nm above), "
        "divided by its maximum over 380–780 nm; the reference for INSS's learned signature and the light of wide-range scenes",
    )


# --------------------------------------------------------------------------- sensor band centres
def sensor_assets() -> None:
    """earthlib's sensor definitions (earthlib/sensors.py): the band centres of the imaging
    sensors it resamples its library to, so the studio can label a cube that came without
    wavelengths. earthlib's own library grid ('Earthlib') is not a sensor and is left out."""
    import earthlib
    import earthlib.sensors

    rows = []
    for name in earthlib.list_sensors():
        if name == "Earthlib":
            continue
        sensor = earthlib.sensors.get_sensor(name)
        centres = np.asarray(sensor.band_centers, dtype=float)
        if sensor.wavelength_unit == "micrometers":
            centres = centres * 1000.0
        # Some multispectral sensors list their bands out of wavelength order (Pelican's first
        # band is its red); the studio's cubes need increasing wavelengths, so such a sensor
        # is kept only if its centres are increasing as listed (a cube's bands follow the list).
        if np.any(np.diff(centres) <= 0):
            print(f"sensor {name}: band centres not increasing as listed, left out")
            continue
        rows.append([name] + [fmt(c, 6) for c in centres])
    rows.sort(key=lambda r: r[0].lower())
    path = os.path.join(ASSETS, "sensors", "earthlib_band_centres.csv")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="\n") as f:
        f.write("sensor,band_centres_nm...\n")
        for r in rows:
            f.write(",".join(r) + "\n")
    note(
        "sensors/earthlib_band_centres.csv",
        f"earthlib {ver('earthlib')}, earthlib/sensors.py (the band centres of the sensors earthlib resamples to: "
        + ", ".join(r[0] for r in rows) + ")",
        "MIT (earthlib)",
        "one sensor per row: its name, then its band centres in nm (µm × 1000), in earthlib's band order; "
        "rows differ in length; sensors whose listed centres are not increasing are left out",
    )


# --------------------------------------------------------------------------- colorimetry (crates.io)
def find_colorimetry_src(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    home = os.path.expanduser("~/.cargo/registry/src")
    hits = sorted(glob.glob(os.path.join(home, "*", "colorimetry-*")))
    return hits[-1] if hits else None


def munsell_assets(src: str | None) -> None:
    if not src:
        print("colorimetry crate source not found: Munsell skipped (see --colorimetry-src)", file=sys.stderr)
        return
    data_rs = os.path.join(src, "src", "colorant", "munsell", "data.rs")
    text = open(data_rs).read()
    keys_block = re.search(r"MUNSELL_MATT_KEYS[^=]*=\s*\[(.*?)\];", text, re.S).group(1)
    keys = re.findall(r'"([^"]+)"', keys_block)
    data_block = re.search(r"MUNSELL_MATT_DATA[^=]*=\s*\[(.*?)\];", text, re.S).group(1)
    data_block = re.sub(r"//[^\n]*", "", data_block)
    values = np.array([float(v) for v in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", data_block)])
    n_wl = 81  # 380..=780 step 5, as documented in the crate's munsell.rs
    if len(keys) != 1269 or values.size != n_wl * len(keys):
        sys.exit(f"unexpected Munsell data: {len(keys)} keys, {values.size} values")
    spectra = values.reshape(len(keys), n_wl)
    src_wl = np.arange(380, 781, 5)
    idx = [int(np.nonzero(src_wl == w)[0][0]) for w in GRID]
    version = os.path.basename(src).split("-", 1)[1]
    hue = [re.match(r"[\d.]*[A-Z]+", k).group(0) if re.match(r"[\d.]*[A-Z]+", k) else "N" for k in keys]
    write_library("libraries/munsell.csv", keys, [f"munsell/{h}" for h in hue], spectra[:, idx], digits=5)
    note(
        "libraries/munsell.csv",
        f"colorimetry {version} (crates.io), src/colorant/munsell/data.rs (1269 matte Munsell chips measured by the "
        "University of Eastern Finland, Perkin-Elmer Lambda 9; 380–780 nm step 5 as stored in the crate)",
        "MIT OR Apache-2.0 (colorimetry crate); measurements from the UEF Spectral Color Research group",
        "samples at 400–700 nm step 10 taken from the crate's 5 nm grid; category = munsell/<hue>",
    )


# --------------------------------------------------------------------------- library CSV
def write_library(rel, names, categories, spectra, digits=5):
    """Row-per-spectrum format: name,category,<one column per wavelength in nm>."""
    for n in names:
        if "," in n or '"' in n:
            sys.exit(f"spectrum name with a comma or quote: {n!r}")
    header = ["name", "category"] + [fmt(w) for w in GRID]
    rows = [[n, c] + [fmt(v, digits) for v in s] for n, c, s in zip(names, categories, spectra)]
    write_csv(rel, header, rows)


def write_sources() -> None:
    lines = [
        "# Assets: origin, licence, conversion",
        "",
        "Every file here is written by `scripts/make_assets.py` (run it with a Python that has",
        "colour-science, pvlib, earthlib and spectral installed, from the repository root) from data",
        "shipped inside registry packages. Nothing is edited by hand.",
        "",
        "Formats:",
        "- curves (`cameras/`, `cie/`, `illuminants/`): CSV with a header, first column `wavelength` in nm,",
        "  then one column per channel, on the source's native grid (no resampling).",
        "- libraries (`libraries/`): one spectrum per row, `name,category,400,410,...,700`: reflectance",
        "  (0–1) on the studio's default grid 400–700 nm step 10.",
        "- sensors (`sensors/`): one sensor per row, its name then its band centres in nm.",
        "- illuminants are relative spectral power, divided by their maximum over 380–780 nm (peak = 1).",
        "",
        "| file | origin (package version, dataset) | licence | conversion |",
        "| --- | --- | --- | --- |",
    ]
    for rel, origin, lic, conv in sources:
        lines.append(f"| `{rel}` | {origin} | {lic} | {conv} |")
    lines += [
        "",
        "Notes:",
        "- Nikon 5100: colour-science ships it as 'Nikon 5100 (NPL)'; that is the curve used.",
        "- earthlib has no water spectra, so the synthetic scenes contain no water.",
        "- USR's camera dictionary is not a file: `train::world::camera_dictionary` builds it in code from",
        "  the shipped files above, the same 28 curves on every run (fixed seed): the Canon EOS 5D Mark II",
        "  as measured, 9 perturbations of it (each channel shifted by up to ±10 nm and tilted smoothly)",
        "  and 18 random cameras of the Dyer 2017 basis (each channel's first component plus the others",
        "  with normal weights of the spread measured cameras show, clipped at zero). Each channel sums",
        "  to 1. The paper's dictionary (the 28 cameras of Jiang et al. 2013) is in no registry package;",
        "  the Nikon 5100 is kept out so the `cross-camera` protocol shows a camera the estimator never",
        "  saw, and no curve of the Nikon D700 or the Sigma SD Merrill is shipped or used.",
        "",
    ]
    with open(os.path.join(ASSETS, "SOURCES.md"), "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--colorimetry-src", help="folder of the unpacked colorimetry crate (default: ~/.cargo/registry)")
    args = ap.parse_args()
    colour_assets()
    cie_lamps()
    astm_g173()
    earthlib_assets()
    earthlib_wide_assets()
    astm_g173_wide()
    sensor_assets()
    munsell_assets(find_colorimetry_src(args.colorimetry_src))
    write_sources()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ASSETS) for f in fs)
    print(f"assets written: {len(sources)} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
