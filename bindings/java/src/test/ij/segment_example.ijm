// Integration test run by ci.sh in a real ImageJ 1 (-batch, xvfb-run, timeout): opens the
// example image, runs Segment Image as a user's macro would, compares the label image with the
// CLI's pixel by pixel, saves the Results table, and prints what it found for
// check_integration.py (the QC measures too). Argument: "<image>|<output folder>|<CLI label image>".
args = split(getArgument(), "|");
open(args[0]);
src = getTitle();
run("Segment Image", "model=nuclei channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0 label_image roi_manager results qc");
lab = getTitle();
if (lab == src) exit("no label image was created");
// The QC measures, as image properties of the segmented image (batch mode shows no QC table).
selectImage(src);
print("QC_OBJECTS=" + Property.get("cytoseg.qc.objects"));
qc = newArray("focus_laplacian", "saturated_fraction", "background", "signal", "contrast_to_noise", "mean_cellprob");
for (i = 0; i < qc.length; i++) print("QC_" + qc[i] + "=" + Property.get("cytoseg.qc." + qc[i]));
selectImage(lab);
getStatistics(area, mean, min, max);
print("LABEL_BITDEPTH=" + bitDepth());
print("LABEL_MAX=" + max);
print("ROI_COUNT=" + roiManager("count"));
print("N_RESULTS=" + nResults);
saveAs("Results", args[1] + "/ij_results.csv");
open(args[2]);
cli = getTitle();
print("CLI_BITDEPTH=" + bitDepth());
imageCalculator("Difference create 32-bit", lab, cli);
getStatistics(area, mean, min, max);
print("LABEL_DIFF_MAX=" + max);
print("DONE");
