// Integration test run by ci.sh in a real ImageJ 1 (-batch, xvfb-run, timeout, CYTOSEG_USER_MODELS
// set to a temporary folder): Train Model as a user's macro records it, on an open image and its
// label image (a tiny run: 2 steps), then Segment Image and Segment Folder with the clone by name;
// then a second tiny clone from ROI Manager annotations (Segment Image's ROIs). ci.sh checks the
// clones' folders and compares Segment Folder's output with `cytoseg segment --model <clone>`.
// Argument: "<image>|<its label image>|<clone name>|<output folder>".
args = split(getArgument(), "|");
name = args[2];
open(args[0]);
img = getTitle();
open(args[1]);
rename("truth");
train = "images_folder=[] labels_folder=[] masks_folder=[] parent=nuclei parent_file=[] minutes=0 steps=2 diameter=0 channels=0 batch_size=2 crop=64";
run("Train Model", "source=[image + label image] image=" + img + " labels=truth name=" + name + " " + train);
print("TRAINED " + name);
selectImage(img);
run("Segment Image", "model=" + name + " channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0 label_image roi_manager");
seg = getTitle();
if (seg == img) exit("no label image was created with the clone");
print("CLONE_LABEL_BITDEPTH=" + bitDepth());
getStatistics(area, mean, min, max);
print("CLONE_LABEL_MAX=" + max);
print("CLONE_ROI_COUNT=" + roiManager("count"));
run("Segment Folder", "input=[" + args[0] + "] output=[" + args[3] + "] model=" + name + " channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0");
open(args[3] + "/" + seg + ".tif");
rename("from_folder");
imageCalculator("Difference create 32-bit", seg, "from_folder");
getStatistics(area, mean, min, max);
print("CLONE_DIFF_MAX=" + max);
// The ROIs of the ROI Manager (here the clone's objects) as annotations of the image.
selectImage(img);
run("Train Model", "source=[ROI Manager] image=" + img + " labels=truth name=" + name + "-rois " + train);
print("TRAINED_ROIS " + name + "-rois");
print("TRAIN_DONE");
