package org.cytoseg.ij;

import ij.IJ;
import ij.Macro;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import java.io.File;
import org.cytoseg.CytosegException;
import org.cytoseg.BatchListener;
import org.cytoseg.Model;
import org.cytoseg.Qc;
import org.cytoseg.SegmentOptions;

/**
 * Plugins &gt; cytoseg &gt; Segment Folder: the engine's batch run (the same one as the
 * {@code cytoseg segment} command, so it writes exactly what the command writes:
 * {@code <stem>_labels.tif}, {@code <stem>_objects.csv}, {@code summary.csv}, {@code run.json}).
 * Progress in the status bar and a line per image in the Log; Esc cancels, and running it
 * again with the same settings finishes the rest (finished images are skipped). With
 * {@code qc_report}, the run's QC report ({@code output/qc/qc_report.html}, as
 * {@code cytoseg segment --qc}) is written at the end and opened in the browser. Macro:
 * {@code run("Segment Folder", "input=/data/in output=/data/out model=nuclei channel=mean
 * diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=auto tile_size=0 qc_report");}
 * With {@code stacks=[3-D flows]} (Cellpose's do_3D; {@code anisotropy}, 0 = each file's z
 * spacing) or {@code stacks=stitch} ({@code stitch_threshold}) z-stacks become 3-D objects, as
 * {@code cytoseg segment --do-3d} or {@code --stitch-threshold}.
 */
public class Segment_Folder implements PlugIn {
    private static final String P = "cytoseg.folder.";

    /** The dialog's settings. */
    public static final class Settings {
        /** Input file, folder or glob pattern. */
        public String input = "";
        /** Output folder. */
        public String output = "";
        /** Model: a name (bundled, or one of the user's: {@link org.cytoseg.Models#available()}) or a package folder. */
        public String model = "nuclei";
        /** "mean" or a 1-based channel number. */
        public String channel = "mean";
        /** Object diameter in pixels, 0 = the model's. */
        public double diameter = 0;
        /** Cell probability threshold. */
        public double cellprob = 0;
        /** Flow error threshold. */
        public double flow = 0.4;
        /** Execution device. */
        public String device = "auto";
        /** Tile edge, 0 = the default (the model's with cellpose tiling, 1024 with fast). */
        public int tile = 0;
        /** "fast" (default) or "cellpose" ({@link SegmentOptions#TILING_NAMES}). */
        public String tiling = "fast";
        /** "auto" (default), "fp32" or "int8" ({@link SegmentOptions#PRECISION_NAMES}). */
        public String precision = "auto";
        /** Take images from sub-folders. */
        public boolean recursive;
        /** Redo finished images. */
        public boolean overwrite;
        /** Write the QC report (output/qc/qc_report.html) at the end and open it. */
        public boolean qcReport;
        /** How z-stacks are segmented: "planes", "3-D flows" or "stitch" ({@link Segment_Image#STACK_MODES}). */
        public String stacks = "planes";
        /** z spacing / pixel size for "3-D flows"; 0 = each file's z spacing (1 when it has none). */
        public double anisotropy = 0;
        /** IoU linking masks of consecutive planes for "stitch". */
        public double stitchThreshold = 0.25;
    }

    @Override
    public void run(String arg) {
        GenericDialog gd = new GenericDialog("cytoseg: Segment Folder");
        gd.addStringField("input", Prefs.get(P + "input", ""), 40);
        gd.addStringField("output", Prefs.get(P + "output", ""), 40);
        String[] models = Engine.modelChoices();
        gd.addChoice("model", models, Prefs.get(P + "model", models[0]));
        gd.addStringField("model_file", Prefs.get(P + "model_file", ""), 30);
        gd.addStringField("channel", Prefs.get(P + "channel", "mean"), 6);
        gd.addNumericField("diameter", Prefs.get(P + "diameter", 0), 1, 6, "pixels (0 = the model's)");
        // Unset preferences start from the preselected model's manifest, not from copies here.
        Settings d = new Settings();
        java.util.Map<String, String> md = Engine.modelDefaults(Prefs.get(P + "model", models[0]),
                Prefs.get(P + "model_file", ""));
        gd.addNumericField("cellprob_threshold",
                Prefs.get(P + "cellprob_threshold", Engine.number(md, "cellprob_threshold", d.cellprob)), 2);
        gd.addNumericField("flow_threshold",
                Prefs.get(P + "flow_threshold", Engine.number(md, "flow_threshold", d.flow)), 2);
        gd.addChoice("device", Engine.devices(), Prefs.get(P + "device", "auto"));
        gd.addNumericField("tile_size", Prefs.get(P + "tile_size", 0), 0, 6, "pixels (0 = default)");
        gd.addChoice("tiling", SegmentOptions.TILING_NAMES, Prefs.get(P + "tiling", "fast"));
        gd.addChoice("precision", SegmentOptions.PRECISION_NAMES, Prefs.get(P + "precision", "auto"));
        String st = Prefs.get(P + "stacks", "planes");
        gd.addChoice("stacks", Segment_Image.STACK_MODES,
                java.util.Arrays.asList(Segment_Image.STACK_MODES).contains(st) ? st : "planes");
        gd.addNumericField("anisotropy", Prefs.get(P + "anisotropy", 0), 2, 6, "(3-D flows; 0 = from each file)");
        gd.addNumericField("stitch_threshold", Prefs.get(P + "stitch_threshold", 0.25), 2, 6, "(stitch)");
        gd.addCheckbox("recursive", false);
        gd.addCheckbox("overwrite", false);
        gd.addCheckbox("qc_report", Prefs.get(P + "qc_report", true));
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        Settings s = new Settings();
        s.input = gd.getNextString().trim();
        s.output = gd.getNextString().trim();
        String model = gd.getNextChoice();
        String modelFile = gd.getNextString();
        s.channel = gd.getNextString().trim();
        s.diameter = gd.getNextNumber();
        s.cellprob = gd.getNextNumber();
        s.flow = gd.getNextNumber();
        s.device = gd.getNextChoice();
        s.tile = (int) gd.getNextNumber();
        s.tiling = gd.getNextChoice();
        s.precision = gd.getNextChoice();
        s.stacks = gd.getNextChoice();
        s.anisotropy = gd.getNextNumber();
        s.stitchThreshold = gd.getNextNumber();
        s.recursive = gd.getNextBoolean();
        s.overwrite = gd.getNextBoolean();
        s.qcReport = gd.getNextBoolean();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "input", s.input);
            Prefs.set(P + "output", s.output);
            Prefs.set(P + "model", model);
            Prefs.set(P + "model_file", modelFile);
            Prefs.set(P + "channel", s.channel);
            Prefs.set(P + "diameter", s.diameter);
            Prefs.set(P + "cellprob_threshold", s.cellprob);
            Prefs.set(P + "flow_threshold", s.flow);
            Prefs.set(P + "device", s.device);
            Prefs.set(P + "tile_size", s.tile);
            Prefs.set(P + "tiling", s.tiling);
            Prefs.set(P + "precision", s.precision);
            Prefs.set(P + "qc_report", s.qcReport);
            Prefs.set(P + "stacks", s.stacks);
            Prefs.set(P + "anisotropy", s.anisotropy);
            Prefs.set(P + "stitch_threshold", s.stitchThreshold);
        }
        try {
            s.model = Engine.modelSpec(model, modelFile);
            IJ.resetEscape();
            long[] c = run(s, (done, total, line) -> {
                if (line != null) {
                    IJ.log("cytoseg: " + line);
                }
                IJ.showProgress(done, total);
                IJ.showStatus("cytoseg: " + done + "/" + total + " images (Esc cancels)");
                return !IJ.escapePressed();
            });
            IJ.showProgress(1.0);
            String summary = new File(s.output, "summary.csv").getPath();
            IJ.log("cytoseg: Segment Folder: " + c[0] + " ok, " + c[1] + " skipped (finished earlier), " + c[2]
                    + " failed, " + c[3] + " cancelled; " + summary);
            if (s.qcReport && c[0] + c[1] > 0) {
                // The images finished so far (this run's and earlier ones'), as cytoseg qc.
                Engine.showQcReport(Qc.report(s.output, null), true);
            }
            if (c[3] > 0) {
                IJ.resetEscape();
                IJ.showStatus("cytoseg: cancelled; run Segment Folder again with the same settings to finish");
            } else if (c[2] > 0) {
                Engine.error("Some images failed; see " + summary + " (and the Log) for each image's error.");
            } else {
                IJ.showStatus("cytoseg: Segment Folder done");
            }
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * The segmentation options these settings stand for.
     *
     * @param s settings
     * @return the options ({@code channel} converted from 1-based to the engine's 0-based)
     */
    public static SegmentOptions options(Settings s) {
        SegmentOptions o = new SegmentOptions();
        if (!"mean".equals(s.channel) && !s.channel.isEmpty()) {
            int c;
            try {
                c = Integer.parseInt(s.channel);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("channel: \"" + s.channel + "\" is not mean or a channel number (1, 2, ...)");
            }
            if (c < 1) {
                throw new IllegalArgumentException("channel: " + c + " (channels are numbered from 1)");
            }
            o.channel = c - 1;
        }
        o.diameter = Math.max(0, s.diameter);
        o.cellprobThreshold = s.cellprob;
        o.flowThreshold = s.flow;
        o.tileSize = Math.max(0, s.tile);
        o.tiling = SegmentOptions.tiling(s.tiling);
        o.precision = SegmentOptions.precision(s.precision);
        return o;
    }

    /**
     * Runs the engine's batch on these settings.
     *
     * @param s settings
     * @param listener progress and cancellation (nullable), called on this thread
     * @return images {ok, skipped, failed, cancelled}
     */
    public static long[] run(Settings s, BatchListener listener) {
        if (s.input.isEmpty()) {
            throw new IllegalArgumentException("input: choose an image folder or file");
        }
        if (s.output.isEmpty()) {
            throw new IllegalArgumentException("output: choose an output folder");
        }
        SegmentOptions o = options(s);
        int mode = stackMode(s);
        Model m = Engine.load(s.model, s.device);
        return m.segmentFolder(new String[] {s.input}, s.output, o, s.recursive, s.overwrite, 0, mode,
                mode == Model.VOLUME_STITCH ? s.stitchThreshold : s.anisotropy,
                "Fiji/ImageJ " + IJ.getVersion() + ": Plugins > cytoseg > Segment Folder", listener);
    }

    /**
     * The engine's stack mode for the "stacks" choice.
     *
     * @param s settings
     * @return {@link Model#STACKS_PLANES}, {@link Model#VOLUME_DO_3D} or {@link Model#VOLUME_STITCH}
     */
    public static int stackMode(Settings s) {
        switch (s.stacks) {
            case "planes":
                return Model.STACKS_PLANES;
            case "3-D flows":
                return Model.VOLUME_DO_3D;
            case "stitch":
                return Model.VOLUME_STITCH;
            default:
                throw new IllegalArgumentException("stacks=" + s.stacks + ": choose planes, 3-D flows or stitch");
        }
    }
}
