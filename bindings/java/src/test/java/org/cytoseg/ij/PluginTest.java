package org.cytoseg.ij;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.measure.ResultsTable;
import ij.process.ColorProcessor;
import ij.process.ShortProcessor;
import java.awt.GraphicsEnvironment;
import java.util.concurrent.atomic.AtomicReference;
import org.cytoseg.Cytoseg;
import org.cytoseg.CytosegException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** The plugin classes, called as ImageJ calls them (macro options on a Run$_ thread). */
class PluginTest {
    static final String OPTIONS = "model=nuclei channel=mean diameter=0 cellprob_threshold=0 flow_threshold=0.4 "
            + "device=cpu tile_size=0 label_image roi_manager results";

    static ImagePlus example() {
        return IJ.openImage("../../models/examples/nuclei_example.tif");
    }

    static void needDisplayAndRuntime() {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "ImageJ dialogs need a display (ci.sh uses xvfb-run)");
        try {
            Cytoseg.runtime();
        } catch (CytosegException e) {
            Assumptions.assumeTrue(false, "ONNX Runtime not found: " + e.getMessage());
        }
    }

    /** Runs body on a thread named like ImageJ's macro threads, with these macro options. */
    static <T> T asMacro(String options, java.util.function.Supplier<T> body) throws InterruptedException {
        AtomicReference<T> out = new AtomicReference<>();
        AtomicReference<Throwable> err = new AtomicReference<>();
        Thread t = new Thread(() -> {
            Macro.setOptions(Thread.currentThread(), options);
            try {
                out.set(body.get());
            } catch (Throwable e) {
                err.set(e);
            } finally {
                Macro.setOptions(Thread.currentThread(), null);
            }
        }, "Run$_cytoseg_test");
        t.start();
        t.join();
        if (err.get() instanceof RuntimeException) throw (RuntimeException) err.get();
        if (err.get() != null) throw new AssertionError(err.get());
        return out.get();
    }

    @Test
    void macroOptionsFillTheSettings() throws Exception {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "ImageJ dialogs need a display");
        ImagePlus imp = example();
        Segment_Image.Settings s = asMacro("model=nuclei channel=1 diameter=25 cellprob_threshold=-0.5 "
                + "flow_threshold=0 device=cuda tile_size=128 results", () -> Segment_Image.dialog(imp));
        assertEquals("nuclei", s.model);
        assertEquals("1", s.channel);
        assertEquals(25.0, s.diameter);
        assertEquals(-0.5, s.cellprobThreshold);
        assertEquals(0.0, s.flowThreshold);
        assertEquals("cuda", s.device);
        assertEquals(128, s.tileSize);
        assertTrue(s.results);
        assertTrue(!s.labelImage && !s.roiManager);
    }

    @Test
    void segmentImageMakesLabelsRoisAndResults() throws Exception {
        needDisplayAndRuntime();
        ImagePlus imp = example();
        Segment_Image.Settings s = asMacro(OPTIONS, () -> Segment_Image.dialog(imp));
        Segment_Image.Output out = Segment_Image.segment(imp, s);
        int n = out.counts[0];
        assertTrue(n > 10, "objects: " + n);
        assertEquals(16, out.labels.getBitDepth());
        assertEquals(n, (int) out.labels.getProcessor().getStatistics().max);
        assertEquals(n, out.rois);
        assertEquals(n, out.roiList.size());
        assertEquals(n, out.rows);
        assertEquals(n, ResultsTable.getResultsTable().size());
        assertEquals("nuclei_example_labels", out.labels.getTitle());
        assertNotNull(out.labels.getProcessor().getLut());
    }

    @Test
    void segmentImageAddsAQcRowNamedByTheImage() throws Exception {
        needDisplayAndRuntime();
        ImagePlus imp = example();
        Segment_Image.Settings s = new Segment_Image.Settings();
        s.device = "cpu";
        s.roiManager = false;
        s.results = false;
        Segment_Image.Output out = Segment_Image.segment(imp, s);
        ResultsTable qc = out.qc;
        assertNotNull(qc);
        int row = qc.size() - 1;
        assertEquals(imp.getTitle(), qc.getLabel(row));
        assertEquals(out.counts[0], (int) qc.getValue("objects", row));
        for (String m : new String[] {"focus_laplacian", "saturated_fraction", "background", "signal",
            "contrast_to_noise", "mean_cellprob", "flow_error_median"}) {
            assertTrue(Double.isFinite(qc.getValue(m, row)), m + " = " + qc.getValue(m, row));
        }
        double p = qc.getValue("mean_cellprob", row);
        assertTrue(p > 0.5 && p <= 1, "mean_cellprob " + p);
        // The same measures as the engine's own QC of this image (summary.csv of Segment Folder
        // is checked against the CLI in ci.sh): a second run appends a row with equal values.
        Segment_Image.Output again = Segment_Image.segment(imp, s);
        assertEquals(row + 2, again.qc.size());
        assertEquals(qc.getValue("focus_laplacian", row), again.qc.getValue("focus_laplacian", row + 1));
        s.qc = false;
        assertEquals(null, Segment_Image.segment(imp, s).qc);
    }

    @Test
    void qcReportCommandWritesTheReport() throws Exception {
        java.nio.file.Path dir = org.cytoseg.QcTest.run();
        QC_Report.Settings s = new QC_Report.Settings();
        s.folder = dir.toString();
        s.options.pattern = "{scope}/*.tif";
        java.util.Map<String, String> v = QC_Report.run(s);
        assertEquals("2", v.get("groups"));
        assertTrue(java.nio.file.Files.exists(dir.resolve("qc/qc_report.html")));
        QC_Report.Settings none = new QC_Report.Settings();
        assertThrows(IllegalArgumentException.class, () -> QC_Report.run(none));
        none.folder = dir.resolve("missing").toString();
        assertThrows(IllegalArgumentException.class, () -> QC_Report.run(none));
    }

    @Test
    void qcReportMacroOptionsFillTheSettings() throws Exception {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "ImageJ dialogs need a display");
        java.nio.file.Path dir = org.cytoseg.QcTest.run();
        // The command as recorded; a -batch/headless run only logs the report's path.
        asMacro("folder=[" + dir + "] pattern=[{scope}/*.tif] sidecar=[] group_by=scope plate_map=[]", () -> {
            new QC_Report().run("");
            return null;
        });
        assertTrue(java.nio.file.Files.exists(dir.resolve("qc/qc_report.html")));
        assertTrue(IJ.getLog() == null || IJ.getLog().contains("cytoseg: QC: 12 image(s) in 2 group(s)"),
                IJ.getLog());
    }

    @Test
    void stacksAreSegmentedPlaneByPlane() throws Exception {
        needDisplayAndRuntime();
        ImagePlus one = example();
        ij.ImageStack st = new ij.ImageStack(one.getWidth(), one.getHeight());
        st.addSlice(one.getProcessor());
        st.addSlice(one.getProcessor().duplicate());
        ImagePlus imp = new ImagePlus("two", st);
        Segment_Image.Settings s = new Segment_Image.Settings();
        s.device = "cpu";
        s.roiManager = false;
        Segment_Image.Output out = Segment_Image.segment(imp, s);
        assertEquals(2, out.counts.length);
        assertEquals(out.counts[0], out.counts[1]);
        assertEquals(2, out.labels.getStackSize());
        assertEquals(2 * out.counts[0], out.rows);

        // The engine's stack convention, as the batch's objects table writes it: labels per
        // plane, a 0-based z column first. Same rows as Segment Folder on the saved stack.
        ij.measure.ResultsTable rt = ij.measure.ResultsTable.getResultsTable();
        assertEquals("z", rt.getColumnHeading(0));
        assertEquals(0.0, rt.getValue("z", 0));
        assertEquals(1.0, rt.getValue("z", out.rows - 1));
        assertEquals(1.0, rt.getValue("label", out.counts[0]));
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("cytoseg-stack");
        IJ.saveAsTiff(imp, dir.resolve("two.tif").toString());
        Segment_Folder.Settings f = new Segment_Folder.Settings();
        f.input = dir.resolve("two.tif").toString();
        f.output = dir.resolve("out").toString();
        f.device = "cpu";
        org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {1, 0, 0, 0}, Segment_Folder.run(f, null));
        java.util.List<String> csv = java.nio.file.Files.readAllLines(dir.resolve("out").resolve("two_objects.csv"));
        assertTrue(csv.get(0).startsWith("z,label,area,"), csv.get(0));
        assertEquals(out.rows + 1, csv.size());
        for (int r = 0; r < out.rows; r++) {
            String[] v = csv.get(r + 1).split(",");
            assertEquals(Double.parseDouble(v[0]), rt.getValue("z", r), "z of row " + r);
            assertEquals(Double.parseDouble(v[1]), rt.getValue("label", r), "label of row " + r);
            assertEquals(Double.parseDouble(v[2]), rt.getValue("area", r), "area of row " + r);
        }
    }

    /**
     * A z-stack into 3-D objects: "3-D flows" with the anisotropy from the calibration (voxel
     * depth 1 µm over 0.5 µm pixels = 2) and "stitch" give the labels Cellpose 4.2.1.1 made
     * around the same network (tests/fixtures/volume_pipeline, see volume_pipeline_parity.rs),
     * one Results row per 3-D object with its calibrated volume.
     */
    @Test
    void zStacksBecome3dObjects() throws Exception {
        needDisplayAndRuntime();
        String dir = "../../tests/fixtures/volume_pipeline/";
        ImagePlus imp = IJ.openImage(dir + "nuclei_stack.tif");
        assertEquals(20, imp.getNSlices());
        ij.measure.Calibration cal = imp.getCalibration();
        cal.pixelWidth = cal.pixelHeight = 0.5;
        cal.pixelDepth = 1.0;
        cal.setUnit("micron");
        for (String[] c : new String[][] {{"3-D flows", "nuclei_3d_a2"}, {"stitch", "nuclei_stitch"}}) {
            Segment_Image.Settings s = new Segment_Image.Settings();
            s.device = "cpu";
            s.roiManager = false;
            s.stacks = c[0];
            s.tiling = "cellpose";
            Segment_Image.Output out = Segment_Image.segment(imp, s);
            ImagePlus want = IJ.openImage(dir + c[1] + "_labels.tif");
            assertEquals(20, out.labels.getStackSize());
            int max = 0;
            for (int z = 1; z <= 20; z++) {
                ij.process.ImageProcessor a = out.labels.getStack().getProcessor(z);
                ij.process.ImageProcessor b = want.getStack().getProcessor(z);
                for (int i = 0; i < a.getPixelCount(); i++) {
                    assertEquals(b.get(i), a.get(i), c[0] + ": plane " + z + " pixel " + i);
                    max = Math.max(max, b.get(i));
                }
            }
            assertEquals(max, out.counts[0]);
            assertEquals(max, out.rows);
            assertEquals(1.0, out.labels.getCalibration().pixelDepth);
            ResultsTable rt = ResultsTable.getResultsTable();
            long voxels = 0;
            for (int z = 1; z <= 20; z++) {
                ij.process.ImageProcessor b = want.getStack().getProcessor(z);
                for (int i = 0; i < b.getPixelCount(); i++) voxels += b.get(i) == 1 ? 1 : 0;
            }
            String[] head = rt.getHeadings();
            assertEquals("label", head[0], c[0]);
            assertTrue(head[1].startsWith("area [") && head[1].endsWith("^3]"), c[0] + ": " + head[1]);
            assertEquals(voxels * 0.25, rt.getValue(head[1], 0), 1e-9, c[0] + ": volume of object 1");
            assertTrue(java.util.Arrays.stream(head).anyMatch(x -> x.startsWith("centroid-2")), c[0]);
        }
        // A 2-D image is no z-stack.
        Segment_Image.Settings s = new Segment_Image.Settings();
        s.device = "cpu";
        s.stacks = "3-D flows";
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Segment_Image.segment(example(), s));
        assertTrue(e.getMessage().contains("segments a z-stack"), e.getMessage());
    }

    @Test
    void hyperstackChannelsAreChosenOrAveraged() throws Exception {
        needDisplayAndRuntime();
        ImagePlus one = example();
        ij.ImageStack st = new ij.ImageStack(one.getWidth(), one.getHeight());
        st.addSlice(one.getProcessor());
        st.addSlice(new ShortProcessor(one.getWidth(), one.getHeight())); // an empty second channel
        ImagePlus imp = new ImagePlus("two channels", st);
        imp.setDimensions(2, 1, 1);
        Segment_Image.Settings s = new Segment_Image.Settings();
        s.device = "cpu";
        s.roiManager = false;
        s.results = false;
        Segment_Image.Output single = Segment_Image.segment(one, s);
        s.channel = "1";
        Segment_Image.Output first = Segment_Image.segment(imp, s);
        org.junit.jupiter.api.Assertions.assertArrayEquals((short[]) single.labels.getProcessor().getPixels(),
                (short[]) first.labels.getProcessor().getPixels());
        s.channel = "2";
        assertEquals(0, Segment_Image.segment(imp, s).counts[0]);
        s.channel = "mean";
        assertTrue(Segment_Image.segment(imp, s).counts[0] > 0);
        s.channel = "3";
        assertThrows(IllegalArgumentException.class, () -> Segment_Image.segment(imp, s));
    }

    @Test
    void unavailableGpuFallsBackToTheCpu() {
        needDisplayAndRuntime();
        String cuda = org.cytoseg.Cytoseg.runtime().get("provider.cuda");
        org.cytoseg.Model m = Engine.load("nuclei", "cuda");
        assertEquals("true".equals(cuda) ? "cuda" : "cpu", m.device());
        Engine.release();
    }

    @Test
    void rgbIsSegmentedFromItsMeanAndRejectedAsLabels() {
        ColorProcessor cp = new ColorProcessor(8, 8);
        ImagePlus rgb = new ImagePlus("rgb", cp);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Evaluate_Labels.evaluate(rgb, rgb, new double[] {0.5}, "iou"));
        assertTrue(e.getMessage().contains("RGB"), e.getMessage());
    }

    @Test
    void missingModelFileIsAClearError() {
        Segment_Image.Settings s = new Segment_Image.Settings();
        s.model = "file";
        s.modelFile = "/no/such/model";
        CytosegException e = assertThrows(CytosegException.class, () -> Segment_Image.segment(example(), s));
        assertTrue(e.getMessage().contains("/no/such/model"), e.getMessage());
        s.modelFile = "";
        e = assertThrows(CytosegException.class, () -> Segment_Image.segment(example(), s));
        assertTrue(e.getMessage().contains("model_file"), e.getMessage());
    }

    @Test
    void evaluateLabelsGivesOneRowPerThreshold() {
        short[] a = new short[16];
        a[0] = a[1] = 1;
        a[10] = a[11] = 2;
        ImagePlus t = new ImagePlus("t", new ShortProcessor(4, 4, a, null));
        ImagePlus p = new ImagePlus("p", new ShortProcessor(4, 4, a.clone(), null));
        ResultsTable rt = Evaluate_Labels.evaluate(t, p, Evaluate_Labels.parseThresholds("0.5, 0.9"), "iou");
        assertEquals(2, rt.size());
        assertEquals(1.0, rt.getValue("AP", 0));
        assertEquals(2.0, rt.getValue("tp", 1));
        assertThrows(IllegalArgumentException.class, () -> Evaluate_Labels.parseThresholds("0.5,x"));
        // The range is the engine's check, the same message as the CLI and the C API give.
        org.cytoseg.CytosegException e = assertThrows(org.cytoseg.CytosegException.class,
                () -> Evaluate_Labels.evaluate(t, p, Evaluate_Labels.parseThresholds("0.5, 1.5"), "iou"));
        assertTrue(e.getMessage().contains("not a number in [0, 1]"), e.getMessage());
    }

    @Test
    void segmentFolderRunsTheEngineBatchAndResumesAfterCancel() throws Exception {
        needDisplayAndRuntime();
        java.nio.file.Path out = java.nio.file.Files.createTempDirectory("cytoseg-folder-test");
        Segment_Folder.Settings f = new Segment_Folder.Settings();
        f.input = "../../models/examples/nuclei_example.tif";
        f.output = out.toString();
        f.device = "cpu";
        java.util.List<String> lines = new java.util.ArrayList<>();
        long[] c = Segment_Folder.run(f, (done, total, line) -> {
            if (line != null) {
                lines.add(line);
            }
            return true;
        });
        org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {1, 0, 0, 0}, c);
        assertEquals(1, lines.size());
        assertTrue(lines.get(0).startsWith("[1/1] ok "), lines.get(0));
        for (String name : new String[] {"nuclei_example_labels.tif", "nuclei_example_objects.csv", "summary.csv", "run.json"}) {
            assertTrue(out.resolve(name).toFile().isFile(), name + " missing");
        }
        String run = new String(java.nio.file.Files.readAllBytes(out.resolve("run.json")), "UTF-8");
        assertTrue(run.contains("Segment Folder") && run.contains("\"api\": \"java\""), run);
        ImagePlus labels = IJ.openImage(out.resolve("nuclei_example_labels.tif").toString());
        Segment_Image.Settings s = new Segment_Image.Settings();
        s.device = "cpu";
        s.roiManager = false;
        s.results = false;
        Segment_Image.Output mine = Segment_Image.segment(example(), s);
        short[] x = (short[]) labels.getProcessor().getPixels();
        short[] y = (short[]) mine.labels.getProcessor().getPixels();
        org.junit.jupiter.api.Assertions.assertArrayEquals(x, y);
        // A second run skips the finished image.
        org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {0, 1, 0, 0}, Segment_Folder.run(f, null));

        // Cancelled at the first progress call (Esc in the plugin), then resumed: the same labels.
        java.nio.file.Path out2 = java.nio.file.Files.createTempDirectory("cytoseg-folder-cancel");
        f.output = out2.toString();
        org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {0, 0, 0, 1},
                Segment_Folder.run(f, (done, total, line) -> false));
        assertTrue(!out2.resolve("nuclei_example_labels.tif").toFile().exists());
        org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {1, 0, 0, 0}, Segment_Folder.run(f, null));
        org.junit.jupiter.api.Assertions.assertArrayEquals(
                java.nio.file.Files.readAllBytes(out.resolve("nuclei_example_labels.tif")),
                java.nio.file.Files.readAllBytes(out2.resolve("nuclei_example_labels.tif")));
    }

    @Test
    void segmentFolderMakes3dObjectsFromStacks() throws Exception {
        needDisplayAndRuntime();
        String dir = "../../tests/fixtures/volume_pipeline/";
        java.nio.file.Path in = java.nio.file.Files.createTempDirectory("cytoseg-folder-3d-in");
        java.nio.file.Files.copy(java.nio.file.Paths.get(dir + "nuclei_stack.tif"), in.resolve("nuclei_stack.tif"));
        for (String[] c : new String[][] {{"3-D flows", "nuclei_3d_a2"}, {"stitch", "nuclei_stitch"}}) {
            java.nio.file.Path out = java.nio.file.Files.createTempDirectory("cytoseg-folder-3d");
            Segment_Folder.Settings f = new Segment_Folder.Settings();
            f.input = in.toString();
            f.output = out.toString();
            f.device = "cpu";
            f.stacks = c[0];
            f.tiling = "cellpose";
            f.anisotropy = 2; // the file has no z spacing
            org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {1, 0, 0, 0}, Segment_Folder.run(f, null));
            ImagePlus got = IJ.openImage(out.resolve("nuclei_stack_labels.tif").toString());
            ImagePlus want = IJ.openImage(dir + c[1] + "_labels.tif");
            assertEquals(20, got.getStackSize());
            for (int z = 1; z <= 20; z++) {
                ij.process.ImageProcessor a = got.getStack().getProcessor(z);
                ij.process.ImageProcessor b = want.getStack().getProcessor(z);
                for (int i = 0; i < a.getPixelCount(); i++) {
                    assertEquals(b.get(i), a.get(i), c[0] + ": plane " + z + " pixel " + i);
                }
            }
            String run = new String(java.nio.file.Files.readAllBytes(out.resolve("run.json")), "UTF-8");
            assertTrue(run.contains("stitch".equals(c[0]) ? "\"stitch\"" : "\"do_3d\""), run);
        }
        Segment_Folder.Settings bad = new Segment_Folder.Settings();
        bad.input = in.toString();
        bad.output = in.resolve("out").toString();
        bad.device = "cpu";
        bad.stacks = "stitch";
        bad.stitchThreshold = -1;
        assertThrows(org.cytoseg.CytosegException.class, () -> Segment_Folder.run(bad, null));
        bad.stacks = "cubes";
        assertThrows(IllegalArgumentException.class, () -> Segment_Folder.run(bad, null));
    }

    @Test
    void dialogsStartFromTheModelsManifest() throws Exception {
        java.util.Map<String, String> d = Engine.modelDefaults("nuclei", "");
        String manifest = new String(java.nio.file.Files.readAllBytes(
                java.nio.file.Paths.get("../../models/nuclei/manifest.json")), "UTF-8");
        java.util.regex.Matcher m = java.util.regex.Pattern
                .compile("\"flow_threshold\"\\s*:\\s*([0-9.eE+-]+)").matcher(manifest);
        assertTrue(m.find(), "manifest has no flow_threshold");
        assertEquals(Double.parseDouble(m.group(1)), Engine.number(d, "flow_threshold", -1), 1e-12);
        assertTrue(d.containsKey("cellprob_threshold") && d.containsKey("diameter"), d.toString());
        assertTrue(Engine.modelDefaults("file", "/no/such/model").isEmpty());
    }

    @Test
    void segmentFolderOptionsAndErrors() {
        Segment_Folder.Settings f = new Segment_Folder.Settings();
        f.channel = "2";
        f.diameter = 25;
        f.tile = 256;
        org.cytoseg.SegmentOptions o = Segment_Folder.options(f);
        assertEquals(1, o.channel);
        assertEquals(25.0, o.diameter);
        assertEquals(256, o.tileSize);
        f.channel = "x";
        assertThrows(IllegalArgumentException.class, () -> Segment_Folder.options(f));
        f.channel = "0";
        assertThrows(IllegalArgumentException.class, () -> Segment_Folder.options(f));
        Segment_Folder.Settings empty = new Segment_Folder.Settings();
        assertThrows(IllegalArgumentException.class, () -> Segment_Folder.run(empty, null));
    }

    @Test
    void segmentFolderReportsAHostileFileAsAFailedImage() throws Exception {
        needDisplayAndRuntime();
        java.nio.file.Path in = java.nio.file.Files.createTempDirectory("cytoseg-hostile-in");
        java.nio.file.Path hostile = java.nio.file.Paths.get("../../tests/fixtures/hostile/huge_200000x200000_uint16.tif");
        java.nio.file.Files.copy(hostile, in.resolve("huge.tif"));
        java.nio.file.Files.copy(java.nio.file.Paths.get("../../models/examples/nuclei_example.tif"), in.resolve("ok.tif"));
        java.nio.file.Path out = java.nio.file.Files.createTempDirectory("cytoseg-hostile-out");
        Segment_Folder.Settings f = new Segment_Folder.Settings();
        f.input = in.toString();
        f.output = out.toString();
        f.device = "cpu";
        java.util.List<String> lines = new java.util.ArrayList<>();
        long[] c = Segment_Folder.run(f, (done, total, line) -> {
            if (line != null) {
                lines.add(line);
            }
            return true;
        });
        org.junit.jupiter.api.Assertions.assertArrayEquals(new long[] {1, 0, 1, 0}, c);
        assertTrue(lines.stream().anyMatch(l -> l.contains("FAILED") && l.contains("huge.tif")
                && l.replace(",", "").contains("80000000000 bytes")), String.join("\n", lines));
    }

    @Test
    void segmentFolderOnEveryFuzzSeedFinishesWithoutCrashing() throws Exception {
        needDisplayAndRuntime();
        java.nio.file.Path in = java.nio.file.Files.createTempDirectory("cytoseg-seeds-in");
        int n = 0;
        for (String t : new String[] {"read_tiff", "read_raster", "read_npy"}) {
            java.io.File[] files = new java.io.File("../../fuzz/seeds/" + t).listFiles();
            assertTrue(files != null && files.length > 0, t);
            java.nio.file.Path sub = java.nio.file.Files.createDirectories(in.resolve(t));
            for (java.io.File f : files) {
                java.nio.file.Files.copy(f.toPath(), sub.resolve(f.getName()));
                n++;
            }
        }
        Segment_Folder.Settings f = new Segment_Folder.Settings();
        f.input = in.toString();
        f.output = java.nio.file.Files.createTempDirectory("cytoseg-seeds-out").toString();
        f.device = "cpu";
        f.recursive = true; // one sub-folder per reader, as fuzz/seeds/
        long[] c = Segment_Folder.run(f, null);
        assertEquals(n, c[0] + c[2], java.util.Arrays.toString(c));
        assertTrue(c[0] > 0 && c[2] > 0, java.util.Arrays.toString(c));
    }
}
