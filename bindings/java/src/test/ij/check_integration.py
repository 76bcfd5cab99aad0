#!/usr/bin/env python3
"""Checks the output of segment_example.ijm (ImageJ 1) against the cytoseg CLI's outputs.

Usage: check_integration.py IJ_LOG IJ_RESULTS_CSV CLI_OBJECTS_CSV [CLI_SUMMARY_CSV]
The label image must equal the CLI's pixel for pixel (LABEL_DIFF_MAX=0); the ROI Manager and the
Results table must hold one entry per object; every measurement column of the CLI's
<stem>_objects.csv must be in the Results table with the same values (ImageJ writes 3 decimals,
hence the tolerance). The QC measures Segment Image recorded (image properties cytoseg.qc.*,
printed as QC_*) must equal the QC columns of the CLI's summary.csv.
Standard library only.
"""
import csv
import sys


def main():
    log, ij_csv, cli_csv = sys.argv[1:4]
    cli_summary = sys.argv[4] if len(sys.argv) > 4 else None
    vals = {}
    for line in open(log, encoding="utf-8", errors="replace"):
        if "=" in line:
            k, v = line.strip().split("=", 1)
            vals[k] = v
    errors = []
    if "DONE" not in open(log, encoding="utf-8", errors="replace").read():
        errors.append("the macro did not finish")
    with open(cli_csv, newline="") as f:
        cli_rows = list(csv.DictReader(f))
    n = len(cli_rows)
    if n == 0:
        errors.append("the CLI found no objects: the test would be vacuous")

    def need(key, want):
        got = vals.get(key)
        try:
            ok = got is not None and float(got) == float(want)
        except ValueError:
            ok = False
        if not ok:
            errors.append(f"{key}={got}, expected {want}")

    need("LABEL_DIFF_MAX", 0)
    need("LABEL_MAX", n)
    need("ROI_COUNT", n)
    need("N_RESULTS", n)
    need("LABEL_BITDEPTH", 16)
    if "QC_OBJECTS" not in vals:
        errors.append("the macro printed no QC measures (Segment Image's qc option)")
    else:
        need("QC_OBJECTS", n)
    if cli_summary and "QC_OBJECTS" in vals:
        with open(cli_summary, newline="") as f:
            summary = list(csv.DictReader(f))[0]
        for m in ("focus_laplacian", "saturated_fraction", "background", "signal",
                  "contrast_to_noise", "mean_cellprob"):
            got, want = vals.get("QC_" + m), summary.get(m)
            try:
                ok = abs(float(got) - float(want)) <= 2e-9 + 1e-9 * abs(float(want))  # 9 decimals
            except (TypeError, ValueError):
                ok = False
            if not ok:
                errors.append(f"QC {m}: Fiji {got}, CLI summary.csv {want}")
    with open(ij_csv, newline="") as f:
        ij_rows = list(csv.DictReader(f))
    if len(ij_rows) != n:
        errors.append(f"Results table has {len(ij_rows)} rows, the CLI's objects.csv {n}")
    else:
        for col in cli_rows[0].keys():
            if col not in ij_rows[0]:
                errors.append(f"column {col!r} of objects.csv is missing from the Results table")
                continue
            for i, (a, b) in enumerate(zip(ij_rows, cli_rows)):
                x, y = float(a[col]), float(b[col])
                if abs(x - y) > 5e-4 + 1e-6 * abs(y):
                    errors.append(f"row {i} {col}: ImageJ {x}, CLI {y}")
                    break
    if errors:
        print("integration check FAILED:\n  " + "\n  ".join(errors))
        return 1
    print(f"integration check ok: {n} objects; labels, ROIs, Results and measurements equal the CLI's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
