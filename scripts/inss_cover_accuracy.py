#!/usr/bin/env python3
"""Do INSS's abundances say what is on the ground? Land-cover accuracy on aerial scenes.

For each seed, `spectral-studio scene --aerial` paints a scene and writes its true dominant
land cover per pixel (cover.npy). Three readings of the land cover are then scored against it,
each summing abundances over earthlib-wide's classes and taking the largest:
  * inss:        the abundances the inss model reads from the RGB picture;
  * fcls(inss):  FCLS unmixing over all 345 earthlib-wide spectra (`unmix --materials ...`) of
                 the cube inss synthesised from the RGB: the classical route from the same picture;
  * fcls(truth): the same unmixing of the true cube, which an RGB user does not have.
Both FCLS readings unmix radiance (the cube as a sensor gives it, in the units inss trains on)
with reflectance spectra, as a user without atmospheric correction would; INSS learns the sun.
(`unmix` without --materials picks at most --endmembers spectra for the whole picture by
forward-backward selection, and stops at two on these scenes: too few for five covers.)
Prints one JSON object: accuracy per reading and seed, and their means over the seeds.

    python3 scripts/inss_cover_accuracy.py target/release/spectral-studio OUT_DIR --seeds 900000,900001 --size 128

Needs numpy only. The seeds 900000.. are the validation seeds of `train --aerial`, never trained on.
"""
import argparse
import csv
import json
import pathlib
import subprocess

import numpy as np

COVERS = ["vegetation", "bare", "npv", "built", "burned"]


def run(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def classes_of(categories):
    return [COVERS.index(c.split("/")[0]) if c.split("/")[0] in COVERS else -1 for c in categories]


def cover_from(abundances, classes):
    """(rows, cols, k) abundances and each endmember's class → (rows, cols) argmax class."""
    sums = np.zeros(abundances.shape[:2] + (len(COVERS),))
    for k, c in enumerate(classes):
        if c >= 0:
            sums[..., c] += np.nan_to_num(abundances[..., k])
    return sums.argmax(axis=-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("out")
    p.add_argument("--seeds", default="900000,900001,900002,900003")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--model", default=None, help="an inss model file (default: the shipped one)")
    a = p.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent
    with open(root / "assets/libraries/earthlib-wide.csv") as f:
        rows = list(csv.DictReader(f))
    category = {row["name"]: row["category"] for row in rows}
    everything = ",".join(row["name"] for row in rows)
    out = pathlib.Path(a.out)
    results = {"inss": {}, "fcls(inss)": {}, "fcls(truth)": {}, "the commonest cover everywhere": {}}
    for seed in a.seeds.split(","):
        d = out / seed
        run(a.binary, "scene", "--aerial", "--seed", seed, "--size", f"{a.size}x{a.size}", "-o", d)
        truth = np.load(d / "cover.npy").astype(int)
        results["the commonest cover everywhere"][seed] = float(np.bincount(truth.ravel()).max() / truth.size)
        model = ["--model", a.model] if a.model else []
        run(a.binary, "reconstruct", d / "rgb.png", "--method", "inss", *model, "-o", d / "syn.hdr", "--abundances", d / "a.npy")
        side = json.loads((d / "a.json").read_text())
        inss = cover_from(np.load(d / "a.npy"), classes_of(side["categories"]))
        results["inss"][seed] = float((inss == truth).mean())
        for name, cube in [("fcls(inss)", "syn.hdr"), ("fcls(truth)", "cube.hdr")]:
            stem = name.replace("(", "_").replace(")", "")
            report = json.loads(run(a.binary, "unmix", d / cube, "--library", "earthlib-wide", "--materials", everything, "-o", d / f"{stem}.npy", "--json"))
            classes = classes_of([category[n] for n in report["endmembers"]])
            results[name][seed] = float((cover_from(np.load(d / f"{stem}.npy"), classes) == truth).mean())
    summary = {name: {"per_seed": r, "mean": float(np.mean(list(r.values())))} for name, r in results.items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
