package org.cytoseg.ij;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.IJ;
import ij.ImagePlus;
import ij.gui.Line;
import ij.gui.OvalRoi;
import ij.gui.PolygonRoi;
import ij.gui.Roi;
import ij.process.ByteProcessor;
import ij.process.ShortProcessor;
import java.awt.GraphicsEnvironment;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.cytoseg.Cytoseg;
import org.cytoseg.CytosegException;
import org.cytoseg.Models;
import org.cytoseg.Native;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Train Model: ROI annotations, staging, names, macro options, and a tiny real training whose
 * clone the model choice then offers (CYTOSEG_USER_MODELS is target/user-models, set in pom.xml).
 */
class TrainModelTest {
    static final int W = 64, H = 48;

    /** Ovals and polygons, the last two overlapping earlier ones, one partly outside the image. */
    static Roi[] rois() {
        return new Roi[] {
            new OvalRoi(4, 5, 14, 11),
            new PolygonRoi(new int[] {30, 40, 40, 30}, new int[] {5, 5, 15, 15}, 4, Roi.POLYGON),
            new PolygonRoi(new int[] {20, 34, 24}, new int[] {20, 26, 40}, 3, Roi.POLYGON),
            new OvalRoi(8, 7, 8, 8), // over the first
            new OvalRoi(56, 40, 14, 14), // clipped at the bottom-right corner
        };
    }

    @Test
    void roisBecomeTheLabelsOfTheEquivalentLabelImage() {
        Roi[] rois = rois();
        int[] labels = Labels.fromRois(rois, W, H);
        // The same objects drawn independently, with ImageJ's own filling, in the same order.
        ShortProcessor drawn = new ShortProcessor(W, H);
        for (int k = 0; k < rois.length; k++) {
            drawn.setValue(k + 1);
            drawn.fill(rois[k]);
        }
        assertArrayEquals(Labels.toInts(drawn, "drawn"), labels);
        // The square polygon covers x 30..39, y 5..14, exactly.
        for (int y = 0; y < H; y++) {
            for (int x = 0; x < W; x++) {
                assertEquals(x >= 30 && x < 40 && y >= 5 && y < 15, labels[y * W + x] == 2, x + "," + y);
            }
        }
        // ROI 4 lies over ROI 1; every label is present.
        assertEquals(4, labels[11 * W + 12]);
        for (int k = 1; k <= rois.length; k++) {
            final int label = k;
            assertTrue(Arrays.stream(labels).anyMatch(v -> v == label), "label " + k);
        }
        // The annotated area: the bounding rectangle of all ROIs together, clipped.
        ByteProcessor mask = Labels.annotatedArea(rois, W, H);
        for (int y = 0; y < H; y++) {
            for (int x = 0; x < W; x++) {
                assertEquals(x >= 4 && y >= 5 ? 255 : 0, mask.get(x, y), x + "," + y);
            }
        }
        assertEquals(0, Labels.annotatedArea(new Roi[0], W, H).getStatistics().max);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Labels.fromRois(new Roi[] {rois[0], new Line(1, 1, 9, 9)}, W, H));
        assertTrue(e.getMessage().contains("ROI 2") && e.getMessage().contains("not an area"), e.getMessage());
    }

    static ImagePlus blobs() {
        ShortProcessor ip = new ShortProcessor(W, H);
        for (int i = 0; i < W * H; i++) {
            ip.set(i, 100 + i % 7);
        }
        return new ImagePlus("my cells.tif", ip);
    }

    @Test
    void stagedFilesHoldTheAnnotations() throws Exception {
        Train_Model.Settings s = new Train_Model.Settings();
        s.source = Train_Model.FROM_ROIS;
        s.image = blobs();
        s.rois = rois();
        Path stage = Files.createTempDirectory("cytoseg-stage-test");
        assertTrue(Train_Model.stageAnnotations(s, stage));
        ImagePlus img = IJ.openImage(stage.resolve("images/my_cells.tif").toString());
        ImagePlus lab = IJ.openImage(stage.resolve("labels/my_cells.tif").toString());
        ImagePlus mask = IJ.openImage(stage.resolve("masks/my_cells.tif").toString());
        assertArrayEquals((short[]) s.image.getProcessor().getPixels(), (short[]) img.getProcessor().getPixels());
        assertEquals(16, lab.getBitDepth());
        assertArrayEquals(Labels.fromRois(rois(), W, H), Labels.toInts(lab.getProcessor(), "staged"));
        assertArrayEquals((byte[]) Labels.annotatedArea(rois(), W, H).getPixels(), (byte[]) mask.getProcessor().getPixels());

        // A label image: the same file, as 16-bit; no masks.
        Path stage2 = Files.createTempDirectory("cytoseg-stage-test");
        s.source = Train_Model.FROM_IMAGES;
        s.labels = new ImagePlus("labels", Labels.processor(Labels.fromRois(rois(), W, H), W, H, false));
        assertEquals(32, s.labels.getBitDepth());
        assertFalse(Train_Model.stageAnnotations(s, stage2));
        assertArrayEquals(Files.readAllBytes(stage.resolve("labels/my_cells.tif")),
                Files.readAllBytes(stage2.resolve("labels/my_cells.tif")));
        assertFalse(stage2.resolve("masks").toFile().exists());

        // Unusable annotations are messages.
        s.labels = s.image;
        assertThrows(IllegalArgumentException.class, () -> Train_Model.stageAnnotations(s, stage2));
        s.labels = new ImagePlus("empty", new ShortProcessor(W, H));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Train_Model.stageAnnotations(s, stage2));
        assertTrue(e.getMessage().contains("no objects"), e.getMessage());
        s.labels = new ImagePlus("small", new ShortProcessor(W, H - 1));
        assertThrows(IllegalArgumentException.class, () -> Train_Model.stageAnnotations(s, stage2));
        s.source = Train_Model.FROM_ROIS;
        s.rois = new Roi[0];
        e = assertThrows(IllegalArgumentException.class, () -> Train_Model.stageAnnotations(s, stage2));
        assertTrue(e.getMessage().contains("ROI Manager is empty"), e.getMessage());
    }

    @Test
    void badNamesAreMessages() {
        String root = Native.userModelDir("");
        assertTrue(root.replace('\\', '/').endsWith("target/user-models"), "tests must not use the user's folder: " + root);
        CytosegException e = assertThrows(CytosegException.class, () -> Models.newModelDir("bad/name"));
        assertTrue(e.getMessage().contains("bad/name") && e.getMessage().contains("letters"), e.getMessage());
        e = assertThrows(CytosegException.class, () -> Models.newModelDir("nuclei"));
        assertTrue(e.getMessage().contains("nuclei") && e.getMessage().contains("choose another name"), e.getMessage());
        e = assertThrows(CytosegException.class, () -> Models.newModelDir(""));
        assertTrue(e.getMessage().contains("name"), e.getMessage());
        Train_Model.Settings s = new Train_Model.Settings();
        s.name = ".hidden";
        e = assertThrows(CytosegException.class, () -> Train_Model.train(s, null));
        assertTrue(e.getMessage().contains(".hidden"), e.getMessage());
        s.name = "ok-name";
        s.steps = -1;
        assertThrows(IllegalArgumentException.class, () -> Train_Model.train(s, null));
        s.steps = 0;
        s.source = "clipboard";
        IllegalArgumentException e2 = assertThrows(IllegalArgumentException.class, () -> Train_Model.train(s, null));
        assertTrue(e2.getMessage().contains("clipboard"), e2.getMessage());
        assertEquals("nuclei-tuned", Train_Model.defaultName("nuclei").replaceAll("-[0-9]+$", ""));
        assertEquals("my_model-tuned", Train_Model.defaultName("/some/where/my model").replaceAll("-[0-9]+$", ""));
        assertEquals("3 min 05 s", Train_Model.duration(185));
    }

    @Test
    void macroOptionsFillTheSettings() throws Exception {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "ImageJ dialogs need a display (ci.sh uses xvfb-run)");
        ImagePlus img = blobs();
        ImagePlus lab = new ImagePlus("my cells_labels", Labels.processor(Labels.fromRois(rois(), W, H), W, H, true));
        img.show();
        lab.show();
        try {
            Train_Model.Settings s = PluginTest.asMacro("source=[image + label image] image=[my cells.tif] "
                    + "labels=[my cells_labels] parent=nuclei name=mine minutes=2.5 steps=7 diameter=12 channels=3 "
                    + "batch_size=2 crop=64", Train_Model::dialog);
            assertEquals(Train_Model.FROM_IMAGES, s.source);
            assertEquals(img, s.image);
            assertEquals(lab, s.labels);
            assertEquals("nuclei", s.parent);
            assertEquals("mine", s.name);
            assertEquals(2.5, s.minutes);
            assertEquals(7, s.steps);
            assertEquals(12.0, s.diameter);
            assertEquals(3, s.channels);
            assertEquals(2, s.batchSize);
            assertEquals(64, s.crop);
            assertFalse(s.showLossCurve);
            // No name: the parent's default name.
            s = PluginTest.asMacro("source=folders images_folder=/a labels_folder=/b parent=nuclei", Train_Model::dialog);
            assertEquals(Train_Model.FROM_FOLDERS, s.source);
            assertEquals("/a", s.imagesFolder);
            assertEquals("", s.masksFolder);
            assertTrue(s.name.startsWith("nuclei-tuned"), s.name);
        } finally {
            img.changes = false;
            lab.changes = false;
            img.close();
            lab.close();
        }
    }

    @Test
    void trainedCloneIsOfferedCancelledRunsResume() throws Exception {
        File tmp = new File(System.getProperty("java.io.tmpdir"));
        int staged = stagingFolders(tmp);
        Train_Model.Settings s = new Train_Model.Settings();
        s.image = IJ.openImage("../../models/examples/nuclei_example.tif");
        s.labels = IJ.openImage("../../models/examples/nuclei_example_labels.tif");
        assertNotNull(s.labels, "ImageJ cannot open the example labels");
        s.name = Train_Model.defaultName("junit");
        s.minutes = 0;
        s.steps = 3;
        s.batchSize = 2;
        s.crop = 64;
        // Esc after the first step: cancelled, the checkpoint kept, the clone not offered yet.
        long[] seen = {0};
        CytosegException e = assertThrows(CytosegException.class, () -> Train_Model.train(s,
                (step, steps, loss, val, lr, el, eta) -> {
                    seen[0] = step;
                    return false;
                }));
        assertTrue(e.isCancelled(), e.getMessage());
        assertEquals(1, seen[0]);
        File folder = new File(Native.userModelDir(""), s.name);
        assertTrue(Train_Model.cancelledRun(folder));
        assertFalse(Models.available().contains(s.name));
        assertEquals(staged, stagingFolders(tmp), "the staging folder was not deleted");
        // The same name again continues the run.
        Train_Model.Result r = Train_Model.train(s, null);
        assertTrue(r.resumed);
        assertEquals(3.0, r.report[0]);
        assertEquals(1.0, r.report[4]);
        assertEquals(folder, r.folder);
        for (String f : new String[] {"model.onnx", "manifest.json", "MODEL_CARD.md", "loss.csv", "loss.png"}) {
            assertTrue(new File(folder, f).isFile(), f + " missing");
        }
        assertEquals(staged, stagingFolders(tmp), "the staging folder was not deleted");
        String manifest = new String(Files.readAllBytes(new File(folder, "manifest.json").toPath()), "UTF-8");
        assertTrue(manifest.contains("Train Model"), "the lineage does not name the command");
        // Every model choice offers the clone now; its name is taken.
        assertTrue(Models.available().contains(s.name), Models.available().toString());
        assertTrue(Arrays.asList(Engine.modelChoices()).contains(s.name));
        assertThrows(CytosegException.class, () -> Models.newModelDir(s.name));
        assertFalse(Train_Model.defaultName("junit").equals(s.name));
        try {
            Cytoseg.runtime();
        } catch (CytosegException noOrt) {
            Assumptions.assumeTrue(false, "ONNX Runtime not found: " + noOrt.getMessage());
        }
        Segment_Image.Settings seg = new Segment_Image.Settings();
        seg.model = s.name;
        seg.device = "cpu";
        seg.roiManager = false;
        seg.results = false;
        Segment_Image.Output out = Segment_Image.segment(s.image, seg);
        assertEquals(16, out.labels.getBitDepth());
        assertEquals(s.image.getWidth(), out.labels.getWidth());
        Engine.release();
    }

    @Test
    void escCancelsTheCommandAndRunningItAgainResumes() throws Exception {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "ImageJ dialogs need a display (ci.sh uses xvfb-run)");
        ImagePlus img = IJ.openImage("../../models/examples/nuclei_example.tif");
        ImagePlus lab = IJ.openImage("../../models/examples/nuclei_example_labels.tif");
        lab.setTitle("truth");
        img.show();
        lab.show();
        String name = Train_Model.defaultName("esc");
        String options = "source=[image + label image] image=nuclei_example.tif labels=truth parent=nuclei name=" + name
                + " minutes=0 steps=8 diameter=0 channels=0 batch_size=2 crop=64";
        File folder = new File(Native.userModelDir(""), name);
        try {
            // The user holds Esc down while the command trains.
            boolean[] done = {false};
            Thread esc = new Thread(() -> {
                while (!done[0]) {
                    IJ.setKeyDown(java.awt.event.KeyEvent.VK_ESCAPE);
                    try {
                        Thread.sleep(5);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            });
            esc.start();
            PluginTest.asMacro(options, () -> {
                new Train_Model().run("");
                return null;
            });
            done[0] = true;
            esc.join();
            assertTrue(Train_Model.cancelledRun(folder), "no checkpoint after Esc");
            assertEquals(name, ij.Prefs.get("cytoseg.train.cancelled", ""));
            // The same command again continues the run to the end.
            IJ.resetEscape();
            PluginTest.asMacro(options, () -> {
                new Train_Model().run("");
                return null;
            });
            assertTrue(new File(folder, "manifest.json").isFile() && new File(folder, "model.onnx").isFile());
            assertEquals("", ij.Prefs.get("cytoseg.train.cancelled", ""));
            String manifest = new String(Files.readAllBytes(new File(folder, "manifest.json").toPath()), "UTF-8");
            assertTrue(manifest.contains("\"steps\": 8,"), manifest);
        } finally {
            img.changes = false;
            lab.changes = false;
            img.close();
            lab.close();
        }
    }

    @Test
    void rgbImagesMakeAColourCloneOfAOneChannelParent() throws Exception {
        PluginTest.needDisplayAndRuntime();
        Train_Model.Settings s = new Train_Model.Settings();
        s.image = IJ.openImage("../../models/examples/nuclei_example.tif");
        new ij.process.ImageConverter(s.image).convertToRGB();
        assertEquals(ImagePlus.COLOR_RGB, s.image.getType());
        assertEquals(0, s.channels);
        // The staged RGB TIFF reaches the engine as three channels: with channels left automatic
        // the engine makes a colour clone of the one-channel parent.
        s.labels = IJ.openImage("../../models/examples/nuclei_example_labels.tif");
        s.name = Train_Model.defaultName("rgb");
        s.minutes = 0;
        s.steps = 1;
        s.batchSize = 1;
        s.crop = 64;
        Train_Model.Result r = Train_Model.train(s, null);
        String manifest = new String(Files.readAllBytes(new File(r.folder, "manifest.json").toPath()), "UTF-8");
        assertTrue(manifest.replaceAll("\\s", "").contains("\"channels\":3,"), manifest);
        Engine.release();
    }

    private static int stagingFolders(File tmp) {
        String[] names = tmp.list((d, n) -> n.startsWith("cytoseg-train-"));
        return names == null ? 0 : names.length;
    }
}
