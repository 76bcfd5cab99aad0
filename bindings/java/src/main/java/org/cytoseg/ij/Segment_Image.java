package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.gui.Roi;
import ij.macro.Interpreter;
import ij.measure.Calibration;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;
import ij.plugin.frame.RoiManager;
import ij.process.ImageProcessor;
import java.awt.GraphicsEnvironment;
import java.util.ArrayList;
import java.util.List;
import org.cytoseg.CytosegException;
import org.cytoseg.Model;
import org.cytoseg.Native;
import org.cytoseg.Qc;
import org.cytoseg.SegmentOptions;
import org.cytoseg.Table;

/**
 * Plugins &gt; cytoseg &gt; Segment Image: segments the current image (8-, 16-, 32-bit or RGB;
 * stacks and hyperstacks plane by plane, or z-stacks into 3-D objects with {@code stacks=[3-D
 * flows]} (Cellpose's do_3D) or {@code stacks=stitch}) and outputs a label image, ROIs and the measurement
 * table, and the image's quality-control measures (focus, saturation, background, signal,
 * contrast to noise, the network's confidence; docs/qc.md) as one row per plane of the
 * {@value #QC_TABLE} table. Macro: {@code run("Segment Image", "model=nuclei channel=mean
 * diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=auto tile_size=0 all_planes
 * label_image roi_manager results qc");}
 */
public class Segment_Image implements PlugIn {
    private static final String P = "cytoseg.segment.";
    /** Title of the table of per-image QC measures (one row per segmented image or plane). */
    public static final String QC_TABLE = "cytoseg QC";
    /** Choices of "stacks": plane by plane, Cellpose's do_3D, Cellpose's stitching. */
    public static final String[] STACK_MODES = {"planes", "3-D flows", "stitch"};

    /** Settings of one run (the dialog's fields). */
    public static final class Settings {
        /** A model name (bundled, or one of the user's: {@link org.cytoseg.Models#available()}) or "file". */
        public String model = "nuclei";
        /** Package folder when model is "file". */
        public String modelFile = "";
        /** "mean" or a 1-based channel number. */
        public String channel = "mean";
        /** Diameter in pixels, 0 = the model's. */
        public double diameter = 0;
        /** Cell probability threshold. */
        public double cellprobThreshold = 0.0;
        /** Flow error threshold. */
        public double flowThreshold = 0.4;
        /** Device. */
        public String device = "auto";
        /** Tile size, 0 = the default (the model's with cellpose tiling, 1024 with fast). */
        public int tileSize = 0;
        /** "fast" (default) or "cellpose" ({@link SegmentOptions#TILING_NAMES}). */
        public String tiling = "fast";
        /** "auto" (default), "fp32" or "int8" ({@link SegmentOptions#PRECISION_NAMES}). */
        public String precision = "auto";
        /** Segment every z/t plane (else the current one). */
        public boolean allPlanes = true;
        /** How a z-stack is segmented: "planes" (2-D, plane by plane), "3-D flows" or "stitch". */
        public String stacks = "planes";
        /** z spacing / pixel size for "3-D flows"; 0 = from the calibration (voxel depth / width). */
        public double anisotropy = 0;
        /** IoU linking masks of consecutive planes for "stitch". */
        public double stitchThreshold = 0.25;
        /** Outputs. */
        public boolean labelImage = true, roiManager = true, results = true;
        /** Add the image's QC measures as a row of the "cytoseg QC" table. */
        public boolean qc = true;
    }

    /** What a run produced. */
    public static final class Output {
        /** The label image (also when not shown). */
        public ImagePlus labels;
        /** Objects per plane. */
        public int[] counts;
        /** ROIs made (added to the ROI Manager when one can exist). */
        public int rois;
        /** The ROIs, in plane then label order. */
        public List<Roi> roiList = new ArrayList<>();
        /** Rows written to the Results table. */
        public int rows;
        /** The "cytoseg QC" table the image's rows were added to (null without qc). */
        public ResultsTable qc;
    }

    @Override
    public void run(String arg) {
        ImagePlus imp = WindowManager.getCurrentImage();
        if (imp == null) {
            Engine.error("Segment Image needs an open image (File > Open).");
            return;
        }
        if (imp.getStackSize() == 0 || imp.getWidth() < 2 || imp.getHeight() < 2) {
            Engine.error("The image \"" + imp.getTitle() + "\" is empty or smaller than 2×2 pixels.");
            return;
        }
        try {
            Settings s = dialog(imp);
            if (s == null) {
                return;
            }
            Output out = segment(imp, s);
            if (out != null && s.labelImage) {
                out.labels.show();
            }
        } catch (CytosegException e) {
            if (e.isCancelled()) {
                IJ.showStatus("cytoseg: cancelled");
                IJ.log("cytoseg: cancelled");
            } else {
                Engine.error(e.getMessage());
            }
        } catch (IllegalArgumentException | IllegalStateException | UnsatisfiedLinkError e) {
            Engine.error(e.getMessage());
        } finally {
            IJ.showProgress(1.0);
        }
    }

    /** @return the channel choices for an image: mean, 1..C */
    static String[] channelChoices(ImagePlus imp) {
        int c = imp.getType() == ImagePlus.COLOR_RGB ? 3 : imp.getNChannels();
        String[] out = new String[c + 1];
        out[0] = "mean";
        for (int i = 1; i <= c; i++) {
            out[i] = Integer.toString(i);
        }
        return out;
    }

    /**
     * Shows the dialog (or reads the macro options) and remembers the settings.
     *
     * @param imp the image
     * @return the settings, or null when cancelled
     */
    public static Settings dialog(ImagePlus imp) {
        Settings d = new Settings();
        GenericDialog gd = new GenericDialog("cytoseg: Segment Image");
        String[] models = Engine.modelChoices();
        gd.addChoice("model", models, Prefs.get(P + "model", models[0]));
        gd.addStringField("model_file", Prefs.get(P + "model_file", ""), 30);
        String[] channels = channelChoices(imp);
        String ch = Prefs.get(P + "channel", "mean");
        gd.addChoice("channel", channels, java.util.Arrays.asList(channels).contains(ch) ? ch : "mean");
        gd.addNumericField("diameter", Prefs.get(P + "diameter", d.diameter), 1, 6, "pixels (0 = the model's)");
        // Unset preferences start from the preselected model's manifest, not from copies here.
        java.util.Map<String, String> md = Engine.modelDefaults(Prefs.get(P + "model", models[0]),
                Prefs.get(P + "model_file", ""));
        gd.addNumericField("cellprob_threshold",
                Prefs.get(P + "cellprob_threshold", Engine.number(md, "cellprob_threshold", d.cellprobThreshold)), 2);
        gd.addNumericField("flow_threshold",
                Prefs.get(P + "flow_threshold", Engine.number(md, "flow_threshold", d.flowThreshold)), 2, 6,
                "(0 = no check)");
        gd.addChoice("device", Engine.devices(), Prefs.get(P + "device", "auto"));
        gd.addNumericField("tile_size", Prefs.get(P + "tile_size", 0), 0, 6, "pixels (0 = default)");
        gd.addChoice("tiling", SegmentOptions.TILING_NAMES, Prefs.get(P + "tiling", "fast"));
        gd.addChoice("precision", SegmentOptions.PRECISION_NAMES, Prefs.get(P + "precision", "auto"));
        if (imp.getNSlices() * imp.getNFrames() > 1) {
            gd.addCheckbox("all_planes", Prefs.get(P + "all_planes", true));
        }
        boolean zStack = imp.getNSlices() > 1;
        if (zStack) {
            String st = Prefs.get(P + "stacks", "planes");
            gd.addChoice("stacks", STACK_MODES, java.util.Arrays.asList(STACK_MODES).contains(st) ? st : "planes");
            gd.addNumericField("anisotropy", Prefs.get(P + "anisotropy", 0), 2, 6, "(3-D flows; 0 = from the calibration)");
            gd.addNumericField("stitch_threshold", Prefs.get(P + "stitch_threshold", 0.25), 2, 6, "(stitch)");
        }
        gd.addMessage("Outputs:");
        gd.addCheckbox("label_image", Prefs.get(P + "label_image", true));
        gd.addCheckbox("roi_manager", Prefs.get(P + "roi_manager", true));
        gd.addCheckbox("results", Prefs.get(P + "results", true));
        gd.addCheckbox("qc", Prefs.get(P + "qc", true));
        gd.addHelp("https://github.com/cytoseg/cytoseg#fiji--imagej");
        gd.showDialog();
        if (gd.wasCanceled()) {
            return null;
        }
        Settings s = new Settings();
        s.model = gd.getNextChoice();
        s.modelFile = gd.getNextString();
        s.channel = gd.getNextChoice();
        s.diameter = gd.getNextNumber();
        s.cellprobThreshold = gd.getNextNumber();
        s.flowThreshold = gd.getNextNumber();
        s.device = gd.getNextChoice();
        s.tileSize = (int) gd.getNextNumber();
        s.tiling = gd.getNextChoice();
        s.precision = gd.getNextChoice();
        s.allPlanes = imp.getNSlices() * imp.getNFrames() > 1 ? gd.getNextBoolean() : true;
        if (zStack) {
            s.stacks = gd.getNextChoice();
            s.anisotropy = gd.getNextNumber();
            s.stitchThreshold = gd.getNextNumber();
        }
        s.labelImage = gd.getNextBoolean();
        s.roiManager = gd.getNextBoolean();
        s.results = gd.getNextBoolean();
        s.qc = gd.getNextBoolean();
        if (gd.invalidNumber()) {
            throw new IllegalArgumentException("a numeric field holds an invalid number");
        }
        if (Macro.getOptions() == null) {
            Prefs.set(P + "model", s.model);
            Prefs.set(P + "model_file", s.modelFile);
            Prefs.set(P + "channel", s.channel);
            Prefs.set(P + "diameter", s.diameter);
            Prefs.set(P + "cellprob_threshold", s.cellprobThreshold);
            Prefs.set(P + "flow_threshold", s.flowThreshold);
            Prefs.set(P + "device", s.device);
            Prefs.set(P + "tile_size", s.tileSize);
            Prefs.set(P + "tiling", s.tiling);
            Prefs.set(P + "precision", s.precision);
            Prefs.set(P + "all_planes", s.allPlanes);
            if (zStack) {
                Prefs.set(P + "stacks", s.stacks);
                Prefs.set(P + "anisotropy", s.anisotropy);
                Prefs.set(P + "stitch_threshold", s.stitchThreshold);
            }
            Prefs.set(P + "label_image", s.labelImage);
            Prefs.set(P + "roi_manager", s.roiManager);
            Prefs.set(P + "results", s.results);
            Prefs.set(P + "qc", s.qc);
        }
        return s;
    }

    /** Pixels of one (z, t) plane: the chosen channel, or all channels interleaved. */
    static Object planePixels(ImagePlus imp, int channel, int z, int t, int[] nChannels) {
        int w = imp.getWidth(), h = imp.getHeight(), n = w * h;
        if (imp.getType() == ImagePlus.COLOR_RGB) {
            int[] rgb = (int[]) imp.getStack().getProcessor(imp.getStackIndex(1, z, t)).getPixels();
            if (channel > 0) {
                int shift = 16 - 8 * (channel - 1);
                byte[] out = new byte[n];
                for (int i = 0; i < n; i++) out[i] = (byte) (rgb[i] >> shift);
                nChannels[0] = 1;
                return out;
            }
            byte[] out = new byte[3 * n];
            for (int i = 0; i < n; i++) {
                out[3 * i] = (byte) (rgb[i] >> 16);
                out[3 * i + 1] = (byte) (rgb[i] >> 8);
                out[3 * i + 2] = (byte) rgb[i];
            }
            nChannels[0] = 3;
            return out;
        }
        int nc = imp.getNChannels();
        if (channel > 0 || nc == 1) {
            nChannels[0] = 1;
            return imp.getStack().getProcessor(imp.getStackIndex(Math.max(channel, 1), z, t)).getPixels();
        }
        Object first = imp.getStack().getProcessor(imp.getStackIndex(1, z, t)).getPixels();
        Object out = java.lang.reflect.Array.newInstance(first.getClass().getComponentType(), n * nc);
        for (int c = 0; c < nc; c++) {
            Object src = imp.getStack().getProcessor(imp.getStackIndex(c + 1, z, t)).getPixels();
            // Interleave channel c: pixel i's samples are out[i*nc .. i*nc+nc).
            if (src instanceof byte[]) {
                byte[] a = (byte[]) src, o = (byte[]) out;
                for (int i = 0; i < n; i++) o[i * nc + c] = a[i];
            } else if (src instanceof short[]) {
                short[] a = (short[]) src, o = (short[]) out;
                for (int i = 0; i < n; i++) o[i * nc + c] = a[i];
            } else {
                float[] a = (float[]) src, o = (float[]) out;
                for (int i = 0; i < n; i++) o[i * nc + c] = a[i];
            }
        }
        nChannels[0] = nc;
        return out;
    }

    /**
     * Segments an image with the given settings and fills the requested outputs (the label
     * image is returned, not shown).
     *
     * @param imp the image
     * @param s settings
     * @return the outputs
     * @throws CytosegException for engine errors (cancelled included)
     */
    public static Output segment(ImagePlus imp, Settings s) {
        int type = imp.getType();
        if (type != ImagePlus.GRAY8 && type != ImagePlus.GRAY16 && type != ImagePlus.GRAY32
                && type != ImagePlus.COLOR_RGB) {
            throw new IllegalArgumentException("Segment Image supports 8-, 16-, 32-bit and RGB images; \""
                    + imp.getTitle() + "\" is an 8-bit colour (indexed) image: convert it with Image > Type");
        }
        int channel = "mean".equals(s.channel) ? 0 : Integer.parseInt(s.channel.trim());
        int maxC = type == ImagePlus.COLOR_RGB ? 3 : imp.getNChannels();
        if (channel < 0 || channel > maxC) {
            throw new IllegalArgumentException("channel " + s.channel + ": the image has " + maxC + " channel(s)");
        }
        Model model = Engine.load(Engine.modelSpec(s.model, s.modelFile), s.device);
        SegmentOptions o = new SegmentOptions();
        o.diameter = s.diameter;
        o.cellprobThreshold = s.cellprobThreshold;
        o.flowThreshold = s.flowThreshold;
        o.tileSize = s.tileSize;
        o.tiling = SegmentOptions.tiling(s.tiling);
        o.precision = SegmentOptions.precision(s.precision);
        if (!"planes".equals(s.stacks)) {
            return segmentVolume(imp, s, model, o, channel);
        }
        int w = imp.getWidth(), h = imp.getHeight();
        int z0 = 1, z1 = imp.getNSlices(), t0 = 1, t1 = imp.getNFrames();
        if (!s.allPlanes) {
            z0 = z1 = imp.getSlice();
            t0 = t1 = imp.getFrame();
        }
        int nz = z1 - z0 + 1, nt = t1 - t0 + 1, planes = nz * nt;
        List<int[]> labels = new ArrayList<>();
        int[] counts = new int[planes];
        int maxLabel = 0;
        Calibration cal = imp.getCalibration();
        boolean scaled = isCalibrated(cal);
        Output out = new Output();
        // One loop over the planes: segment, then the plane's ROIs and measurements. The ROI
        // Manager and the Results table change only after the last plane, so a cancel leaves
        // them as they were.
        List<Table> tables = new ArrayList<>();
        List<int[]> tablePlanes = new ArrayList<>();
        List<Table> qcTables = new ArrayList<>();
        List<int[]> qcPlanes = new ArrayList<>();
        double pw = scaled ? cal.pixelWidth : 1.0, ph = scaled ? cal.pixelHeight : 1.0;
        String unit = scaled ? cal.getUnit() : "pixel";
        IJ.resetEscape();
        int p = 0;
        for (int t = t0; t <= t1; t++) {
            for (int z = z0; z <= z1; z++, p++) {
                if (IJ.escapePressed()) {
                    throw new CytosegException(CytosegException.CANCELLED, "cancelled");
                }
                final int plane = p;
                IJ.showStatus("cytoseg: segmenting plane " + (p + 1) + "/" + planes);
                int[] nc = new int[1];
                Object px = planePixels(imp, channel, z, t, nc);
                int[] lab = new int[w * h];
                float[] flows = s.qc ? new float[3 * w * h] : null;
                counts[p] = model.segment(px, w, h, nc[0], o, lab, flows, (done, total) -> {
                    IJ.showProgress((plane * (double) total + done) / ((double) planes * total));
                    return !IJ.escapePressed();
                });
                maxLabel = Math.max(maxLabel, counts[p]);
                labels.add(lab);
                if (s.qc) {
                    // Measured on what was segmented: the chosen channel, or the mean of all.
                    qcTables.add(Qc.imageQc(lab, w, h, px, nc[0], flows, pw, ph, unit));
                    qcPlanes.add(new int[] {t, z});
                }
                if (s.roiManager) {
                    Roi[] rois = Labels.rois(lab, w, h, counts[p]);
                    for (int l = 1; l < rois.length; l++) {
                        if (rois[l] == null) {
                            continue;
                        }
                        Roi r = rois[l];
                        r.setName(planes > 1 ? String.format("p%d-%04d", p + 1, l) : String.format("%04d", l));
                        if (planes > 1) {
                            r.setPosition(0, nz > 1 ? z - z0 + 1 : 0, nt > 1 ? t - t0 + 1 : 0);
                        }
                        out.roiList.add(r);
                    }
                }
                if (s.results) {
                    // Measured on every channel, as <stem>_objects.csv.
                    int[] all = new int[1];
                    Object pixels = planePixels(imp, 0, z, t, all);
                    tables.add(Native.measure(lab, w, h, pixels, all[0], pw, ph, unit));
                    tablePlanes.add(new int[] {t, z});
                }
            }
        }
        out.counts = counts;
        out.labels = Labels.image(imp.getShortTitle() + "_labels", labels, w, h, nz, nt, maxLabel, cal);
        if (s.roiManager) {
            RoiManager rm = roiManager();
            if (rm != null) {
                rm.reset();
                for (Roi r : out.roiList) {
                    rm.addRoi(r);
                }
            }
            out.rois = out.roiList.size();
        }
        if (s.qc) {
            // Before the Results table, which is then the active one (saveAs("Results") saves it).
            out.qc = addQcRows(imp.getTitle(), qcTables, qcPlanes, nz, nt);
            setQcProperties(imp, qcTables);
        }
        if (s.results) {
            ResultsTable rt = ResultsTable.getResultsTable();
            rt.reset();
            for (int k = 0; k < tables.size(); k++) {
                Table tab = tables.get(k);
                int t = tablePlanes.get(k)[0], z = tablePlanes.get(k)[1];
                for (int r = 0; r < tab.rows(); r++) {
                    rt.incrementCounter();
                    // The engine's stack convention (as <stem>_objects.csv): labels per plane,
                    // the plane named by 0-based t and z columns first.
                    if (nt > 1) rt.addValue("t", t - 1);
                    if (nz > 1) rt.addValue("z", z - 1);
                    addRow(rt, tab, r);
                    out.rows++;
                }
            }
            rt.show("Results");
            if (s.qc) {
                // The Results table stays the active one (saveAs("Results") saves the active table).
                java.awt.Window resultsWindow = ij.WindowManager.getWindow("Results");
                if (resultsWindow != null) {
                    ij.WindowManager.toFront(resultsWindow);
                }
            }
        }
        IJ.showStatus("cytoseg: " + sum(counts) + " objects in " + planes + " plane(s)");
        return out;
    }

    /** Adds row r of an engine table to the current row of rt, columns named "name [unit]". */
    static void addRow(ResultsTable rt, Table tab, int r) {
        for (int c = 0; c < tab.columns(); c++) {
            String u = tab.unit(c);
            rt.addValue(u.isEmpty() ? tab.name(c) : tab.name(c) + " [" + u + "]", tab.get(c, r));
        }
    }

    /** The planes of z-stack {@code imp} (time point t), one after the other, as the engine takes them. */
    static Object stackPixels(ImagePlus imp, int channel, int t, int[] nChannels) {
        int nz = imp.getNSlices();
        Object first = planePixels(imp, channel, 1, t, nChannels);
        int per = java.lang.reflect.Array.getLength(first);
        Object all = java.lang.reflect.Array.newInstance(first.getClass().getComponentType(), per * nz);
        System.arraycopy(first, 0, all, 0, per);
        for (int z = 2; z <= nz; z++) {
            System.arraycopy(planePixels(imp, channel, z, t, nChannels), 0, all, (z - 1) * per, per);
        }
        return all;
    }

    /**
     * A z-stack into 3-D objects ("3-D flows": Cellpose's do_3D with the anisotropy given or
     * from the calibration; "stitch": 2-D planes linked across z): one label stack, ROIs per
     * slice named by object and plane, the 3-D measurement table (volumes, centroids in z, y,
     * x) in Results, QC rows per plane.
     */
    static Output segmentVolume(ImagePlus imp, Settings s, Model model, SegmentOptions o, int channel) {
        int nz = imp.getNSlices(), nt = imp.getNFrames();
        if (!java.util.Arrays.asList(STACK_MODES).contains(s.stacks)) {
            throw new IllegalArgumentException("stacks=" + s.stacks + ": choose planes, 3-D flows or stitch");
        }
        if (nz < 2 || nt > 1) {
            throw new IllegalArgumentException("stacks=" + s.stacks + " segments a z-stack of 2 slices or more at one "
                    + "time point; \"" + imp.getTitle() + "\" has " + nz + " slice(s) and " + nt + " frame(s)");
        }
        boolean stitch = "stitch".equals(s.stacks);
        Calibration cal = imp.getCalibration();
        boolean scaled = isCalibrated(cal);
        double anisotropy = s.anisotropy > 0 ? s.anisotropy
                : (scaled && cal.pixelWidth > 0 ? cal.pixelDepth / cal.pixelWidth : 1.0);
        int w = imp.getWidth(), h = imp.getHeight(), n = w * h, t = imp.getFrame();
        int[] nc = new int[1];
        Object px = stackPixels(imp, channel, t, nc);
        int[] lab = new int[n * nz];
        IJ.resetEscape();
        IJ.showStatus("cytoseg: segmenting " + nz + " planes in 3-D (" + s.stacks + ")");
        int count = model.segmentVolume(px, w, h, nz, nc[0], o, stitch ? Model.VOLUME_STITCH : Model.VOLUME_DO_3D,
                stitch ? s.stitchThreshold : anisotropy, lab, (done, total) -> {
                    IJ.showProgress(done / (double) total);
                    return !IJ.escapePressed();
                });
        Output out = new Output();
        out.counts = new int[] {count};
        List<int[]> planes = new ArrayList<>();
        for (int z = 0; z < nz; z++) {
            planes.add(java.util.Arrays.copyOfRange(lab, z * n, (z + 1) * n));
        }
        Calibration labelsCal = cal.copy();
        if (!scaled) {
            // The anisotropy as voxel depth, so that the label stack shows its geometry.
            labelsCal.pixelDepth = stitch ? 1.0 : anisotropy;
        }
        out.labels = Labels.image(imp.getShortTitle() + "_labels", planes, w, h, nz, 1, count, labelsCal);
        double pw = scaled ? cal.pixelWidth : 1.0, ph = scaled ? cal.pixelHeight : 1.0;
        double zs = scaled ? cal.pixelDepth : labelsCal.pixelDepth;
        String unit = scaled ? cal.getUnit() : "pixel";
        if (s.roiManager) {
            for (int z = 0; z < nz; z++) {
                Roi[] rois = Labels.rois(planes.get(z), w, h, count);
                for (int l = 1; l < rois.length; l++) {
                    if (rois[l] != null) {
                        rois[l].setName(String.format("%04d-z%d", l, z + 1));
                        rois[l].setPosition(0, z + 1, 0);
                        out.roiList.add(rois[l]);
                    }
                }
            }
            RoiManager rm = roiManager();
            if (rm != null) {
                rm.reset();
                for (Roi r : out.roiList) {
                    rm.addRoi(r);
                }
            }
            out.rois = out.roiList.size();
        }
        if (s.qc) {
            List<Table> qcTables = new ArrayList<>();
            List<int[]> qcPlanes = new ArrayList<>();
            for (int z = 1; z <= nz; z++) {
                int[] c1 = new int[1];
                Object plane = planePixels(imp, channel, z, t, c1);
                qcTables.add(Qc.imageQc(planes.get(z - 1), w, h, plane, c1[0], null, pw, ph, unit));
                qcPlanes.add(new int[] {t, z});
            }
            out.qc = addQcRows(imp.getTitle(), qcTables, qcPlanes, nz, 1);
            setQcProperties(imp, qcTables);
        }
        if (s.results) {
            int[] all = new int[1];
            Object pixels = stackPixels(imp, 0, t, all);
            Table tab = Native.measureVolume(lab, w, h, nz, pixels, all[0], pw, ph, zs, unit);
            ResultsTable rt = ResultsTable.getResultsTable();
            rt.reset();
            for (int r = 0; r < tab.rows(); r++) {
                rt.incrementCounter();
                addRow(rt, tab, r);
                out.rows++;
            }
            rt.show("Results");
        }
        IJ.showStatus("cytoseg: " + count + " 3-D objects in " + nz + " planes");
        return out;
    }

    /**
     * Appends one row per plane to the {@value #QC_TABLE} table (kept across runs, so that
     * images segmented one after another can be compared), labelled by the image title (and
     * its plane for stacks), and shows it.
     */
    static ResultsTable addQcRows(String title, List<Table> tables, List<int[]> planes, int nz, int nt) {
        ResultsTable rt = ResultsTable.getResultsTable(QC_TABLE);
        if (rt == null) {
            rt = new ResultsTable();
        }
        for (int k = 0; k < tables.size(); k++) {
            Table tab = tables.get(k);
            int t = planes.get(k)[0], z = planes.get(k)[1];
            String label = title;
            if (nt > 1) label += " t=" + (t - 1);
            if (nz > 1) label += " z=" + (z - 1);
            rt.incrementCounter();
            rt.addLabel(label);
            for (int c = 0; c < tab.columns(); c++) {
                String u = tab.unit(c);
                rt.addValue(u.isEmpty() ? tab.name(c) : tab.name(c) + " [" + u + "]", tab.get(c, 0));
            }
        }
        // A batch-mode macro has one active table, which saveAs("Results") writes: showing a
        // second table there would take the measurements' place, so the QC rows stay off
        // screen (the image's properties carry them, see setQcProperties).
        if (!Interpreter.isBatchMode()) {
            rt.show(QC_TABLE);
        }
        return rt;
    }

    /**
     * Records the QC measures of the image's first plane as image properties
     * {@code cytoseg.qc.<measure>} (a macro reads them with
     * {@code Property.get("cytoseg.qc.focus_laplacian")}, also in batch mode).
     */
    static void setQcProperties(ImagePlus imp, List<Table> tables) {
        if (tables.isEmpty()) {
            return;
        }
        Table tab = tables.get(0);
        for (int c = 0; c < tab.columns(); c++) {
            imp.setProp("cytoseg.qc." + tab.name(c), tab.get(c, 0));
        }
    }

    /** Whether the image has a physical pixel size (a real unit, not blank or "pixel"). */
    static boolean isCalibrated(Calibration cal) {
        String u = cal.getUnit();
        return cal.scaled() && u != null && !u.trim().isEmpty() && !u.startsWith("pixel");
    }

    /**
     * The ROI Manager to fill: the hidden one of a batch-mode macro, the visible one otherwise,
     * none when headless (no window can exist).
     */
    static RoiManager roiManager() {
        if (Interpreter.isBatchMode()) {
            return Interpreter.getBatchModeRoiManager();
        }
        if (GraphicsEnvironment.isHeadless()) {
            return null;
        }
        return RoiManager.getRoiManager();
    }

    private static long sum(int[] a) {
        long s = 0;
        for (int v : a) s += v;
        return s;
    }

    /** Exposed for tests: the processor type of a label plane. */
    static boolean isSixteen(ImageProcessor ip) {
        return ip.getBitDepth() == 16;
    }
}
