// Integration test run by ci.sh in a real ImageJ 1 (-batch, xvfb-run, timeout): Segment Folder
// as a user's macro records it, on a folder; ci.sh then compares every output with the
// `cytoseg segment` command's for the same folder, and that the QC report was written (by
// Segment Folder's qc_report, then again by QC Report...). Argument: "<input folder>|<output folder>".
args = split(getArgument(), "|");
run("Segment Folder", "input=[" + args[0] + "] output=[" + args[1] + "] model=nuclei channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0 qc_report");
run("QC Report...", "folder=[" + args[1] + "] pattern=[] sidecar=[] group_by=[] plate_map=[] open_report");
print(getInfo("log"));
print("FOLDER_DONE");
