"""Fan a screen out over a Dask cluster, one run per well, then merge the runs.

A screen is thousands of fields; this runs it as a workflow manager would (the Nextflow version
is ``examples/nextflow/screen.nf``), using only the ``cytoseg`` command line:

1. ``cytoseg segment PLATE --layout auto --list-fields`` lists the fields (plate, well, site);
2. one Dask task per well runs ``cytoseg segment PLATE --layout auto --well W --out RUNS/W``
   (each run is resumable on its own: a task that is retried, or the whole script run again,
   skips every field its run already finished);
3. ``cytoseg merge RUNS/* --out OUT`` recomputes the per-well table from all the runs' objects
   tables and draws the plate heatmaps and dose-response fits (``--parquet`` adds Parquet
   tables for pandas).

The merged ``wells.csv`` equals that of a single run over the whole plate (tested in
``tests/test_dask.py``). The workers need the ``cytoseg`` executable and a view of the folders.

    python dask_screen.py PLATE_DIR OUT_DIR [--plate-map map.csv] [--value area_mean]
        [--parquet] [--workers 2] [--scheduler ADDRESS] [--cytoseg PATH] [-- segment options]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence


def cytoseg_exe(path: str | os.PathLike[str] | None = None) -> str:
    """The ``cytoseg`` executable: ``path``, ``$CYTOSEG_CLI``, or the one on ``PATH``."""
    exe = path or os.environ.get("CYTOSEG_CLI") or shutil.which("cytoseg")
    if not exe:
        raise FileNotFoundError("no cytoseg executable: pass --cytoseg or set CYTOSEG_CLI")
    return str(exe)


def _run(cmd: Sequence[str]) -> str:
    """Runs a command; its stdout, or an error carrying its stderr."""
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stderr}")
    return p.stdout


def list_wells(exe: str, plate: str, segment_args: Sequence[str] = ()) -> list[str]:
    """The screen's wells (in plate order) from ``--list-fields``."""
    out = _run([exe, "segment", plate, "--layout", "auto", "--list-fields", *segment_args])
    wells: list[str] = []
    for row in csv.DictReader(io.StringIO(out)):
        key = f"{row['plate']}\t{row['well']}"
        if key not in wells:
            wells.append(key)
    return wells


def segment_well(
    exe: str, plate: str, key: str, runs_dir: str, segment_args: Sequence[str] = ()
) -> str:
    """One Dask task: the run of one well (``key`` is ``plate<TAB>well``) into its own folder;
    returns the folder."""
    plate_name, well = key.split("\t")
    out = Path(runs_dir) / (f"{plate_name}_{well}" if plate_name else well)
    select = ["--well", well] + (["--plate", plate_name] if plate_name else [])
    _run([exe, "segment", plate, "--layout", "auto", *select, "--out", str(out), "-q",
          *segment_args])
    return str(out)


def screen(
    plate: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    client: Any,
    exe: str | None = None,
    segment_args: Sequence[str] = (),
    merge_args: Sequence[str] = (),
) -> list[str]:
    """Runs the screen in ``plate`` one well per Dask task into ``OUT_DIR/runs/``, then merges
    the runs into ``OUT_DIR/merged/``. ``segment_args`` go to every run (``--plate-map``,
    ``--diameter``, ``--device``...), ``merge_args`` to the merge (``--value``, ``--parquet``).
    Returns the run folders."""
    exe = cytoseg_exe(exe)
    plate, out_dir = str(plate), Path(out_dir)
    wells = list_wells(exe, plate, segment_args)
    runs_dir = out_dir / "runs"
    futures = client.map(
        segment_well, [exe] * len(wells), [plate] * len(wells), wells,
        [str(runs_dir)] * len(wells), segment_args=list(segment_args), pure=False,
    )
    runs = client.gather(futures)
    _run([exe, "merge", *runs, "--out", str(out_dir / "merged"), "-q", *merge_args])
    return runs


def main() -> None:
    from dask.distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plate_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--plate-map", help="CSV: well, treatment, concentration, control...")
    ap.add_argument("--value", action="append", default=[], help="per-well value to draw")
    ap.add_argument("--parquet", action="store_true", help="also write Parquet tables")
    ap.add_argument("--cytoseg", help="the cytoseg executable (default: $CYTOSEG_CLI or PATH)")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler (default: local)")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes")
    ap.add_argument("segment_args", nargs="*", help="more `cytoseg segment` options, after --")
    a = ap.parse_args()
    seg = list(a.segment_args) + (["--plate-map", a.plate_map] if a.plate_map else [])
    merge = [f"--value={v}" for v in a.value] + (["--parquet"] if a.parquet else [])
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        client = Client(LocalCluster(n_workers=a.workers, threads_per_worker=1,
                                     dashboard_address=None))
    with client:
        runs = screen(a.plate_dir, a.out_dir, client, a.cytoseg, seg, merge)
    print(f"{len(runs)} well run(s) merged into {Path(a.out_dir) / 'merged' / 'wells.csv'}")


if __name__ == "__main__":
    main()
