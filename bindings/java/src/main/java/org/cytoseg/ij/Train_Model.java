package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.ImageStack;
import ij.Macro;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.gui.Roi;
import ij.io.FileSaver;
import ij.macro.Interpreter;
import ij.plugin.PlugIn;
import ij.plugin.frame.RoiManager;
import ij.process.ImageProcessor;
import java.awt.Choice;
import java.awt.EventQueue;
import java.awt.TextField;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.cytoseg.CytosegException;
import org.cytoseg.Models;
import org.cytoseg.Native;
import org.cytoseg.TrainListener;

/**
 * Plugins &gt; cytoseg &gt; Train Model: clones a model and fine-tunes it on the user's
 * annotations with the engine's trainer ({@link Native#train}, as {@code cytoseg train --name}),
 * saving the clone in the user's models folder, where Segment Image, Segment Folder, napari and
 * the command line find it by name. Annotations come from an open image and its label image
 * (e.g. Segment Image's output corrected with ImageJ's tools), from the ROI Manager (one ROI per
 * object; only the bounding rectangle of all ROIs is learned) or from folders of images and
 * label images (paired by file name, with optional masks of the annotated regions). Open images
 * are written to a temporary folder for the engine and the folder is deleted afterwards.
 * Progress in the status and progress bars; Esc cancels (a checkpoint is kept, and running the
 * command again with the same name continues). Macro:
 * {@code run("Train Model", "source=[image + label image] image=cells.tif labels=cells_labels.tif
 * parent=nuclei name=mycells minutes=10 steps=0 diameter=0 channels=0 batch_size=8 crop=128");}
 */
public class Train_Model implements PlugIn {
    private static final String P = "cytoseg.train.";
    /** Source: an open image and its label image. */
    public static final String FROM_IMAGES = "image + label image";
    /** Source: the open image and the ROIs of the ROI Manager. */
    public static final String FROM_ROIS = "ROI Manager";
    /** Source: folders of images, label images and optional masks. */
    public static final String FROM_FOLDERS = "folders";
    static final String[] SOURCES = {FROM_IMAGES, FROM_ROIS, FROM_FOLDERS};
    /** The engine's checkpoint file in a clone's folder (a cancelled run). */
    public static final String CHECKPOINT = "checkpoint.cytoseg-train";
    private static final String NONE = "-";
    private static final String HELP = "https://github.com/cytoseg/cytoseg/blob/main/docs/fiji-training.md";

    /** Settings of one run (the dialog's fields). */
    public static final class Settings {
        /** {@link #FROM_IMAGES}, {@link #FROM_ROIS} or {@link #FROM_FOLDERS}. */
        public String source = FROM_IMAGES;
        /** The annotated image (images and ROI Manager sources). */
        public ImagePlus image;
        /** Its label image (images source). */
        public ImagePlus labels;
        /** The objects (ROI Manager source); null: the ROI Manager's ROIs. */
        public Roi[] rois;
        /** Folder of training images (folders source). */
        public String imagesFolder = "";
        /** Folder of their label images, paired by file stem (folders source). */
        public String labelsFolder = "";
        /** Folder of annotated-region masks, paired the same way; empty for none. */
        public String masksFolder = "";
        /** Parent model: a choice of {@link Engine#modelChoices()}. */
        public String parent = "nuclei";
        /** The parent's package folder when parent is "file". */
        public String parentFile = "";
        /** The clone's name; empty: {@link #defaultName}. */
        public String name = "";
        /** Time budget in minutes, 0 = none (the steps decide). */
        public double minutes = 10;
        /** Training steps, 0 = the engine's default. */
        public int steps = 0;
        /** Object diameter in the training images in pixels, 0 = measured from the labels. */
        public double diameter = 0;
        /** The clone's input channels, 0 = automatic (the engine's rule: 3 for colour images and a one-channel parent). */
        public int channels = 0;
        /** Crops per step, 0 = the engine's default. */
        public int batchSize = 0;
        /** Crop edge in pixels, 0 = the engine's default. */
        public int crop = 0;
        /** Open the clone's loss.png when done. */
        public boolean showLossCurve;
    }

    /** What a finished run produced. */
    public static final class Result {
        /** The clone's name. */
        public String name;
        /** Its package folder. */
        public File folder;
        /** Whether a cancelled run was continued. */
        public boolean resumed;
        /** The engine's report: {steps, finalTrainLoss, finalValLoss (NaN without validation),
         * diameter, trainImages, valImages, wallS}. */
        public double[] report;
    }

    @Override
    public void run(String arg) {
        if (EventQueue.isDispatchThread()) {
            // Never train on the event thread (ImageJ runs menu commands on their own thread).
            new Thread(() -> run(arg), "cytoseg Train Model").start();
            return;
        }
        Settings s = null;
        try {
            s = dialog();
            if (s == null) {
                return;
            }
            IJ.resetEscape();
            final String name = s.name;
            Result r = train(s, (step, steps, loss, val, lr, elapsed, eta) -> {
                IJ.showProgress(elapsed / Math.max(1e-9, elapsed + eta));
                IJ.showStatus(String.format(Locale.ROOT, "cytoseg: training %s: step %d/%d, loss %.4f%s, %s left (Esc cancels)",
                        name, step, steps, loss, Double.isNaN(val) ? "" : String.format(Locale.ROOT, ", validation %.4f", val),
                        duration(eta)));
                return !IJ.escapePressed();
            });
            report(r, s);
        } catch (CytosegException e) {
            if (e.isCancelled() && s != null) {
                IJ.resetEscape();
                Prefs.set(P + "cancelled", s.name);
                String msg = "Train Model cancelled; the checkpoint is kept in " + cloneFolder(s.name)
                        + ". Run Train Model again with the name " + s.name + " and the same data and settings to continue.";
                IJ.log("cytoseg: " + msg);
                IJ.showStatus("cytoseg: training cancelled (checkpoint kept)");
            } else {
                Engine.error(e.getMessage());
            }
        } catch (IllegalArgumentException | IllegalStateException | UnsatisfiedLinkError e) {
            Engine.error(e.getMessage());
        } finally {
            IJ.showProgress(1.0);
        }
    }

    /** @return the titles of the open images, or {"-"} when none is open */
    static String[] imageTitles() {
        int[] ids = WindowManager.getIDList();
        if (ids == null || ids.length == 0) {
            return new String[] {NONE};
        }
        List<String> t = new ArrayList<>();
        for (int id : ids) {
            ImagePlus imp = WindowManager.getImage(id);
            if (imp != null) {
                t.add(imp.getTitle());
            }
        }
        return t.isEmpty() ? new String[] {NONE} : t.toArray(new String[0]);
    }

    /** The image to preselect: the current one, or the image a current "X_labels" belongs to. */
    static String defaultImage(String[] titles) {
        ImagePlus cur = WindowManager.getCurrentImage();
        if (cur == null) {
            return titles[0];
        }
        String t = cur.getShortTitle();
        if (t.endsWith("_labels")) {
            String base = t.substring(0, t.length() - "_labels".length());
            for (String x : titles) {
                if (WindowManager.getImage(x) != null && WindowManager.getImage(x).getShortTitle().equals(base)) {
                    return x;
                }
            }
        }
        return cur.getTitle();
    }

    /** The label image to preselect: "X_labels" for the image X (Segment Image's title), else another image. */
    static String defaultLabels(String[] titles, String image) {
        ImagePlus imp = WindowManager.getImage(image);
        String want = imp == null ? null : imp.getShortTitle() + "_labels";
        for (String x : titles) {
            ImagePlus l = WindowManager.getImage(x);
            if (l != null && l.getShortTitle().equals(want)) {
                return x;
            }
        }
        for (String x : titles) {
            if (!x.equals(image)) {
                return x;
            }
        }
        return titles[0];
    }

    /**
     * The default name of a clone of {@code parent}: {@code <parent>-tuned}, or
     * {@code <parent>-tuned-2}, -3 ... when a model or a folder in the user's models folder has
     * that name already.
     *
     * @param parent the parent's name or package folder
     * @return a new name
     */
    public static String defaultName(String parent) {
        String base = new File(parent.trim()).getName().replaceAll("[^A-Za-z0-9._-]", "_").replaceAll("^\\.+", "");
        base = (base.isEmpty() ? "model" : base) + "-tuned";
        Set<String> taken = new HashSet<>(Models.available());
        File root = null;
        try {
            root = new File(Native.userModelDir(""));
        } catch (LinkageError | RuntimeException e) {
            // No user models folder: names of the models found only.
        }
        String name = base;
        for (int i = 2; taken.contains(name) || (root != null && new File(root, name).exists()); i++) {
            name = base + "-" + i;
        }
        return name;
    }

    /** The folder of a clone (existing or not), for messages; the name itself when unknown. */
    static String cloneFolder(String name) {
        try {
            return new File(Native.userModelDir(""), name).getPath();
        } catch (LinkageError | RuntimeException e) {
            return name;
        }
    }

    /** @return whether {@code folder} holds a cancelled run (a checkpoint and no package yet) */
    static boolean cancelledRun(File folder) {
        return new File(folder, CHECKPOINT).isFile() && !new File(folder, "manifest.json").exists();
    }

    /**
     * Shows the dialog (or reads the macro options) and remembers the settings.
     *
     * @return the settings, or null when cancelled
     * @throws IllegalArgumentException for an invalid number
     */
    public static Settings dialog() {
        Map<String, String> td = new HashMap<>();
        try {
            td = Native.parseKeyValues(Native.trainDefaults());
        } catch (LinkageError | RuntimeException e) {
            // The run reports why the library is missing.
        }
        String[] titles = imageTitles();
        String image = defaultImage(titles);
        String[] models = Engine.modelChoices();
        String parent = Prefs.get(P + "parent", models[0]);
        String parentFile = Prefs.get(P + "parent_file", "");
        // A cancelled run is offered for resuming; else a new name.
        String cancelled = Prefs.get(P + "cancelled", "");
        boolean resumable = !cancelled.isEmpty() && cancelledRun(new File(cloneFolder(cancelled)));
        String auto = defaultName(Engine.FROM_FILE.equals(parent) ? parentFile : parent);
        GenericDialog gd = new GenericDialog("cytoseg: Train Model");
        gd.addChoice("source", SOURCES, Prefs.get(P + "source", FROM_IMAGES));
        gd.addMessage("Image + label image, or ROI Manager (each ROI one object; only their bounding rectangle is learned):");
        gd.addChoice("image", titles, image);
        gd.addChoice("labels", titles, defaultLabels(titles, image));
        gd.addMessage("Folders (label images paired with the images by file name; masks optional):");
        gd.addDirectoryField("images_folder", Prefs.get(P + "images_folder", ""), 30);
        gd.addDirectoryField("labels_folder", Prefs.get(P + "labels_folder", ""), 30);
        gd.addDirectoryField("masks_folder", Prefs.get(P + "masks_folder", ""), 30);
        gd.addMessage("The new model, a clone of the parent (parent = file: the package folder in parent file):");
        gd.addChoice("parent", models, parent);
        gd.addStringField("parent_file", parentFile, 30);
        gd.addStringField("name", resumable ? cancelled : auto, 20);
        if (resumable) {
            gd.addMessage("The training of \"" + cancelled + "\" was cancelled: keep its name to continue it.");
        }
        gd.addNumericField("minutes", Prefs.get(P + "minutes", 10), 1, 6, "time budget (0 = none)");
        gd.addNumericField("steps", Prefs.get(P + "steps", 0), 0, 6, "(0 = the engine's, " + td.getOrDefault("steps", "1000") + ")");
        gd.addNumericField("diameter", Prefs.get(P + "diameter", 0), 1, 6, "pixels (0 = measured from the labels)");
        gd.addNumericField("channels", Prefs.get(P + "channels", 0), 0, 6, "(0 = automatic)");
        gd.addNumericField("batch_size", Prefs.get(P + "batch_size", Engine.number(td, "batch_size", 8)), 0, 6, "crops per step");
        gd.addNumericField("crop", Prefs.get(P + "crop", Engine.number(td, "crop", 128)), 0, 6, "pixels");
        gd.addCheckbox("show_loss_curve", !Interpreter.isBatchMode() && Prefs.get(P + "show_loss_curve", true));
        gd.addHelp(HELP);
        followParent(gd, resumable ? null : auto);
        gd.showDialog();
        if (gd.wasCanceled()) {
            return null;
        }
        Settings s = new Settings();
        s.source = gd.getNextChoice();
        String imageTitle = gd.getNextChoice();
        String labelsTitle = gd.getNextChoice();
        s.image = NONE.equals(imageTitle) ? null : WindowManager.getImage(imageTitle);
        s.labels = NONE.equals(labelsTitle) ? null : WindowManager.getImage(labelsTitle);
        s.imagesFolder = gd.getNextString().trim();
        s.labelsFolder = gd.getNextString().trim();
        s.masksFolder = gd.getNextString().trim();
        s.parent = gd.getNextChoice();
        s.parentFile = gd.getNextString().trim();
        s.name = gd.getNextString().trim();
        s.minutes = gd.getNextNumber();
        s.steps = (int) gd.getNextNumber();
        s.diameter = gd.getNextNumber();
        s.channels = (int) gd.getNextNumber();
        s.batchSize = (int) gd.getNextNumber();
        s.crop = (int) gd.getNextNumber();
        s.showLossCurve = gd.getNextBoolean();
        if (gd.invalidNumber()) {
            throw new IllegalArgumentException("a numeric field holds an invalid number");
        }
        if (s.name.isEmpty()) {
            s.name = defaultName(Engine.FROM_FILE.equals(s.parent) ? s.parentFile : s.parent);
        }
        if (Macro.getOptions() == null) {
            Prefs.set(P + "source", s.source);
            Prefs.set(P + "images_folder", s.imagesFolder);
            Prefs.set(P + "labels_folder", s.labelsFolder);
            Prefs.set(P + "masks_folder", s.masksFolder);
            Prefs.set(P + "parent", s.parent);
            Prefs.set(P + "parent_file", s.parentFile);
            Prefs.set(P + "minutes", s.minutes);
            Prefs.set(P + "steps", s.steps);
            Prefs.set(P + "diameter", s.diameter);
            Prefs.set(P + "channels", s.channels);
            Prefs.set(P + "batch_size", s.batchSize);
            Prefs.set(P + "crop", s.crop);
            Prefs.set(P + "show_loss_curve", s.showLossCurve);
        }
        return s;
    }

    /**
     * While the dialog is open, a new parent choice renames the clone to the parent's default
     * name, unless the user typed a name.
     */
    private static void followParent(GenericDialog gd, String auto) {
        if (gd.getChoices() == null || gd.getStringFields() == null || auto == null) {
            return; // macro mode (no components) or a cancelled run's name to keep
        }
        Choice parentChoice = (Choice) gd.getChoices().get(3);
        TextField parentFile = (TextField) gd.getStringFields().get(3);
        TextField name = (TextField) gd.getStringFields().get(4);
        String[] last = {auto};
        // Plain AWT listeners: a GenericDialog DialogListener would take over the recording.
        Runnable follow = () -> {
            if (name.getText().trim().equals(last[0])) {
                String p = parentChoice.getSelectedItem();
                last[0] = defaultName(Engine.FROM_FILE.equals(p) ? parentFile.getText() : p);
                name.setText(last[0]);
            }
        };
        parentChoice.addItemListener(e -> follow.run());
        parentFile.addTextListener(e -> follow.run());
    }

    /**
     * Trains a clone with these settings (on the calling thread) into the user's models folder;
     * continues a cancelled run of the same name.
     *
     * @param s settings
     * @param listener progress and cancel, or null
     * @return what was made
     * @throws CytosegException for engine errors, cancelled included (the checkpoint is kept)
     * @throws IllegalArgumentException for unusable settings or annotations
     */
    public static Result train(Settings s, TrainListener listener) {
        if (s.minutes < 0 || s.steps < 0 || s.diameter < 0 || s.channels < 0 || s.batchSize < 0 || s.crop < 0) {
            throw new IllegalArgumentException("minutes, steps, diameter, channels, batch_size and crop must not be negative");
        }
        if (!java.util.Arrays.asList(SOURCES).contains(s.source)) {
            throw new IllegalArgumentException("source \"" + s.source + "\": use " + String.join(", ", SOURCES));
        }
        String parentSpec = Engine.modelSpec(s.parent, s.parentFile);
        String name = s.name == null || s.name.trim().isEmpty() ? defaultName(parentSpec) : s.name.trim();
        File folder = new File(Models.newModelDir(name));
        boolean resume = cancelledRun(folder);
        Map<String, Double> change = new LinkedHashMap<>();
        put(change, "steps", s.steps);
        put(change, "minutes", s.minutes);
        put(change, "diameter", s.diameter);
        put(change, "batch_size", s.batchSize);
        put(change, "crop", s.crop);
        Path stage = null;
        try {
            String images, labels, masks = null;
            if (FROM_FOLDERS.equals(s.source)) {
                if (s.imagesFolder.isEmpty() || s.labelsFolder.isEmpty()) {
                    throw new IllegalArgumentException("source=folders needs images_folder and labels_folder");
                }
                images = s.imagesFolder;
                labels = s.labelsFolder;
                masks = s.masksFolder.isEmpty() ? null : s.masksFolder;
            } else {
                stage = Files.createTempDirectory("cytoseg-train-");
                boolean withMasks = stageAnnotations(s, stage);
                images = stage.resolve("images").toString();
                labels = stage.resolve("labels").toString();
                masks = withMasks ? stage.resolve("masks").toString() : null;
            }
            put(change, "channels", s.channels);
            if (resume) {
                IJ.log("cytoseg: continuing the cancelled training in " + folder);
            }
            double[] report;
            try {
                report = Native.train(Models.resolve(parentSpec), images, labels, masks, null, null, folder.getPath(),
                        Native.trainOptions(change), resume, "Fiji/ImageJ " + IJ.getVersion()
                        + ": Plugins > cytoseg > Train Model (" + s.source + ")", listener);
            } catch (CytosegException e) {
                if (resume && !e.isCancelled()) {
                    throw new CytosegException(e.status(), e.getMessage() + "\n(Train Model continues the cancelled run"
                            + " in that folder because its name is the same: use the same data and settings, or choose"
                            + " another name.)");
                }
                throw e;
            }
            Engine.release(); // a model cached under this name before is not this clone
            Result r = new Result();
            r.name = name;
            r.folder = folder;
            r.resumed = resume;
            r.report = report;
            return r;
        } catch (IOException e) {
            throw new CytosegException(300, "could not prepare the training data: " + e.getMessage());
        } finally {
            if (stage != null) {
                deleteTree(stage);
            }
        }
    }

    private static void put(Map<String, Double> change, String key, double value) {
        if (value > 0) {
            change.put(key, value);
        }
    }

    /**
     * Writes the open image's annotations as the engine's training folders: images/, labels/
     * and (ROI Manager) masks/, one file per annotated plane, paired by name.
     *
     * @return whether masks were written
     */
    static boolean stageAnnotations(Settings s, Path stage) throws IOException {
        ImagePlus imp = s.image;
        if (imp == null) {
            throw new IllegalArgumentException("Train Model needs an open image (or source=folders)");
        }
        int type = imp.getType();
        if (type != ImagePlus.GRAY8 && type != ImagePlus.GRAY16 && type != ImagePlus.GRAY32 && type != ImagePlus.COLOR_RGB) {
            throw new IllegalArgumentException("\"" + imp.getTitle() + "\" is an 8-bit colour (indexed) image: "
                    + "convert it with Image > Type");
        }
        File images = Files.createDirectories(stage.resolve("images")).toFile();
        File labels = Files.createDirectories(stage.resolve("labels")).toFile();
        String stem = imp.getTitle().replaceFirst("\\.[A-Za-z0-9]{1,5}$", "").replaceAll("[^A-Za-z0-9._-]", "_");
        if (stem.isEmpty() || stem.startsWith(".")) {
            stem = "image" + stem;
        }
        int w = imp.getWidth(), h = imp.getHeight(), nz = imp.getNSlices(), nt = imp.getNFrames();
        boolean stack = nz * nt > 1;
        int written = 0;
        if (FROM_ROIS.equals(s.source)) {
            File masks = Files.createDirectories(stage.resolve("masks")).toFile();
            Roi[] rois = s.rois != null ? s.rois : managerRois();
            if (rois.length == 0) {
                throw new IllegalArgumentException("The ROI Manager is empty: outline each object (oval, polygon or "
                        + "freehand selection) and add it with Edit > Selection > Add to Manager (or T)");
            }
            // ROIs of a stack belong to their plane (those without a position to the current one).
            Map<Integer, List<Roi>> byPlane = new LinkedHashMap<>();
            for (Roi r : rois) {
                byPlane.computeIfAbsent(planeOf(r, imp), k -> new ArrayList<>()).add(r);
            }
            for (Map.Entry<Integer, List<Roi>> e : byPlane.entrySet()) {
                Roi[] plane = e.getValue().toArray(new Roi[0]);
                int z = e.getKey() % nz + 1, t = e.getKey() / nz + 1;
                String f = (stack ? stem + "_z" + z + "_t" + t : stem) + ".tif";
                int[] lab = Labels.fromRois(plane, w, h);
                save(planeImage(imp, z, t), new File(images, f));
                save(new ImagePlus(f, Labels.processor(lab, w, h, plane.length <= 65535)), new File(labels, f));
                save(new ImagePlus(f, Labels.annotatedArea(plane, w, h)), new File(masks, f));
                written++;
            }
            return true;
        }
        ImagePlus lab = s.labels;
        if (lab == null || lab == imp) {
            throw new IllegalArgumentException("choose the label image of \"" + imp.getTitle()
                    + "\" (labels=...): a different open image, e.g. Segment Image's output corrected with ImageJ's tools");
        }
        if (lab.getWidth() != w || lab.getHeight() != h || lab.getStackSize() != nz * nt) {
            throw new IllegalArgumentException("\"" + lab.getTitle() + "\" is " + lab.getWidth() + "×" + lab.getHeight()
                    + "×" + lab.getStackSize() + " but \"" + imp.getTitle() + "\" is " + w + "×" + h + " with " + nz * nt
                    + " plane(s): the label image must have the image's size and one plane per z/t plane");
        }
        int skipped = 0;
        for (int t = 1; t <= nt; t++) {
            for (int z = 1; z <= nz; z++) {
                int[] l = Labels.toInts(lab.getStack().getProcessor((t - 1) * nz + z), "\"" + lab.getTitle() + "\"");
                int max = 0;
                for (int v : l) {
                    max = Math.max(max, v);
                }
                if (max == 0) {
                    skipped++; // an unannotated plane (of a stack): nothing to learn there
                    continue;
                }
                String f = (stack ? stem + "_z" + z + "_t" + t : stem) + ".tif";
                save(planeImage(imp, z, t), new File(images, f));
                save(new ImagePlus(f, Labels.processor(l, w, h, max <= 65535)), new File(labels, f));
                written++;
            }
        }
        if (written == 0) {
            throw new IllegalArgumentException("\"" + lab.getTitle() + "\" holds no objects: nothing to learn from");
        }
        if (skipped > 0) {
            IJ.log("cytoseg: Train Model: " + skipped + " plane(s) of \"" + lab.getTitle() + "\" without labels are not used");
        }
        return false;
    }

    /** @return the ROIs of the ROI Manager (the batch-mode one in a batch-mode macro) */
    static Roi[] managerRois() {
        RoiManager rm = Interpreter.isBatchMode() ? Interpreter.getBatchModeRoiManager() : RoiManager.getInstance();
        if ((rm == null || rm.getCount() == 0) && Interpreter.isBatchMode()) {
            rm = RoiManager.getInstance();
        }
        return rm == null ? new Roi[0] : rm.getRoisAsArray();
    }

    /** The 0-based (t, z) plane index of a ROI: its position, else the image's current plane. */
    static int planeOf(Roi r, ImagePlus imp) {
        int nz = imp.getNSlices(), nt = imp.getNFrames();
        int z = imp.getSlice(), t = imp.getFrame();
        if (r.hasHyperStackPosition()) {
            z = r.getZPosition() > 0 ? r.getZPosition() : z;
            t = r.getTPosition() > 0 ? r.getTPosition() : t;
        } else if (r.getPosition() > 0 && r.getPosition() <= imp.getStackSize() && nz * nt > 1) {
            int[] czt = imp.convertIndexToPosition(r.getPosition());
            z = czt[1];
            t = czt[2];
        }
        return (Math.min(t, nt) - 1) * nz + Math.min(z, nz) - 1;
    }

    /** One z/t plane of an image with all its channels, as a new image (no selection, no overlay). */
    static ImagePlus planeImage(ImagePlus imp, int z, int t) {
        int nc = imp.getType() == ImagePlus.COLOR_RGB ? 1 : imp.getNChannels();
        ImageStack st = new ImageStack(imp.getWidth(), imp.getHeight());
        for (int c = 1; c <= nc; c++) {
            ImageProcessor ip = imp.getStack().getProcessor(imp.getStackIndex(c, z, t));
            st.addSlice(ip);
        }
        ImagePlus out = new ImagePlus(imp.getShortTitle(), st);
        if (nc > 1) {
            out.setDimensions(nc, 1, 1);
            out.setOpenAsHyperStack(true);
        }
        return out;
    }

    private static void save(ImagePlus imp, File f) {
        if (!new FileSaver(imp).saveAsTiff(f.getPath())) {
            throw new CytosegException(300, "could not write " + f);
        }
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> walk = Files.walk(root)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            IJ.log("cytoseg: could not delete the temporary folder " + root + ": " + e.getMessage());
        }
    }

    /** Logs where the clone is and how training went; opens its loss curve when asked. */
    static void report(Result r, Settings s) {
        double[] v = r.report;
        String parent = Engine.FROM_FILE.equals(s.parent) ? s.parentFile : s.parent;
        IJ.log(String.format(Locale.ROOT, "cytoseg: Train Model: %s %s (parent %s): %d steps in %s on %d image(s)%s; "
                + "final loss %.4f%s; objects' diameter %.1f px",
                r.resumed ? "finished" : "trained", r.name, parent, (long) v[0], duration(v[6]), (long) v[4],
                v[5] > 0 ? " (" + (long) v[5] + " for validation)" : "", v[1],
                Double.isNaN(v[2]) ? "" : String.format(Locale.ROOT, ", validation loss %.4f", v[2]), v[3]));
        IJ.log("cytoseg: the model " + r.name + " is in " + r.folder + " (model.onnx, manifest.json, MODEL_CARD.md, "
                + "loss.csv, loss.png); Segment Image and Segment Folder now offer it as model " + r.name);
        IJ.showStatus("cytoseg: trained " + r.name + "; Segment Image and Segment Folder offer it");
        if (r.name.equals(Prefs.get(P + "cancelled", ""))) {
            Prefs.set(P + "cancelled", "");
        }
        if (s.showLossCurve) {
            ImagePlus curve = IJ.openImage(new File(r.folder, "loss.png").getPath());
            if (curve != null) {
                curve.setTitle(r.name + " loss.png");
                curve.show();
            }
        }
    }

    /** @return seconds as "1 h 05 min", "3 min 20 s", "12 s" or "0.4 s" */
    static String duration(double seconds) {
        if (!(seconds >= 0) || Double.isInfinite(seconds)) {
            return "?";
        }
        long s = Math.round(seconds);
        if (s >= 3600) {
            return String.format(Locale.ROOT, "%d h %02d min", s / 3600, (s % 3600) / 60);
        }
        if (s >= 60) {
            return String.format(Locale.ROOT, "%d min %02d s", s / 60, s % 60);
        }
        return seconds < 10 ? String.format(Locale.ROOT, "%.1f s", seconds) : s + " s";
    }
}
