// Error paths in a real ImageJ 1 under -batch (run by ci.sh with a timeout): each bad input must
// give a message and leave ImageJ running, never a modal dialog (which would hang under Xvfb).
// Argument: the example image.
open(getArgument());
run("Segment Image", "model=file model_file=/no/such/model channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0 label_image");
print("AFTER_MISSING_MODEL nImages=" + nImages);
newImage("rgbimg", "RGB black", 64, 64, 1);
run("Evaluate Labels", "truth=rgbimg prediction=rgbimg thresholds=0.5 criterion=iou");
print("AFTER_RGB_LABELS");
newImage("tiny", "8-bit black", 1, 1, 1);
run("Segment Image", "model=nuclei channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=cpu tile_size=0 label_image");
print("AFTER_TINY");
selectImage(1);
run("Train Model", "source=[image + label image] image=" + getTitle() + " labels=rgbimg parent=nuclei name=[bad/name] minutes=0 steps=1 diameter=0 channels=0 batch_size=2 crop=64");
print("AFTER_BAD_NAME");
run("Train Model", "source=[ROI Manager] image=" + getTitle() + " labels=rgbimg parent=nuclei name=empty-rois minutes=0 steps=1 diameter=0 channels=0 batch_size=2 crop=64");
print("AFTER_EMPTY_ROIS");
print("DONE");
