#!/usr/bin/env nextflow
// A screen fanned out with Nextflow: one cytoseg run per well, then one merge.
//
//   nextflow run examples/nextflow/screen.nf --plate /data/Plate7 --plate_map map.csv \
//       --values area_mean --out screen -resume
//
// 1. LIST_WELLS: `cytoseg segment PLATE --layout auto --list-fields` (plate,well,site,files);
// 2. SEGMENT_WELL: one task per well, `--well W --plate P`, each into its own run folder
//    (Nextflow's -resume skips finished tasks; a retried task's run also skips the fields it
//    had finished);
// 3. MERGE: `cytoseg merge` recomputes wells.csv from every run's objects tables (equal to a
//    single run over the plate), draws the heatmaps and dose-response fits, writes Parquet.
// The dask version of the same three steps, tested in CI, is
// bindings/python/examples/dask_screen.py. Needs `cytoseg` on PATH (or --cytoseg PATH).

nextflow.enable.dsl = 2

params.plate = null
params.out = 'screen'
params.plate_map = null
params.values = 'area_mean'
params.cytoseg = 'cytoseg'
params.segment_args = '--device cpu'

def mapArg = params.plate_map ? "--plate-map ${file(params.plate_map)}" : ''

process LIST_WELLS {
    input:
    val plate

    output:
    stdout

    script:
    """
    ${params.cytoseg} segment '${plate}' --layout auto --list-fields ${mapArg}
    """
}

process SEGMENT_WELL {
    tag "${plateName} ${well}"
    cpus 2

    input:
    tuple val(plate), val(plateName), val(well)

    output:
    path "run_${plateName}_${well}"

    script:
    def select = plateName ? "--plate '${plateName}' --well ${well}" : "--well ${well}"
    """
    ${params.cytoseg} segment '${plate}' --layout auto ${select} ${mapArg} \\
        ${params.segment_args} --jobs ${task.cpus} --out run_${plateName}_${well} -q
    """
}

process MERGE {
    publishDir params.out, mode: 'copy'

    input:
    path runs

    output:
    path 'merged'

    script:
    """
    ${params.cytoseg} merge ${runs} --out merged --value ${params.values} --parquet
    """
}

workflow {
    if (!params.plate) error "give the plate folder: --plate DIR"
    def plate = file(params.plate).toString()
    wells = LIST_WELLS(plate)
        .splitCsv(header: true)
        .map { row -> tuple(plate, row.plate, row.well) }
        .unique()
    MERGE(SEGMENT_WELL(wells).collect())
}
