// Integration test run by ci.sh in a real ImageJ 1 (-batch, xvfb-run, timeout): Segment Folder
// as a user's macro records it, on a folder; ci.sh then compares every output with the
// `cytoseg segment` command's for the same folder. Argument: "<input folder>|<output folder>".
args = split(getArgument(), "|");
run("Segment Folder", "input=[" + args[0] + "] output=[" + args[1] + "] model=nuclei channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0");
print(getInfo("log"));
print("FOLDER_DONE");
