package org.cytoseg.ij;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.ImagePlus;
import ij.gui.Overlay;
import ij.gui.PointRoi;
import ij.gui.Roi;
import ij.measure.ResultsTable;
import ij.process.ByteProcessor;
import ij.process.ShortProcessor;
import java.nio.file.Path;
import org.cytoseg.Classifier;
import org.cytoseg.ClassifierTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Train Classifier and Classify Objects on an image, its labels and ROIs (no ONNX Runtime). */
class ClassifierPluginTest {
    static final int W = ClassifierTest.W, H = ClassifierTest.H;

    static ImagePlus image() {
        return new ImagePlus("cells", new ByteProcessor(W, H, ClassifierTest.image(ClassifierTest.labels())));
    }

    static ImagePlus labelImage() {
        int[] l = ClassifierTest.labels();
        short[] s = new short[l.length];
        for (int i = 0; i < l.length; i++) s[i] = (short) l[i];
        return new ImagePlus("cells_labels", new ShortProcessor(W, H, s, null));
    }

    /** The centre of object k as a pixel position. */
    static int[] centre(int k) {
        return new int[] {(k - 1) % 6 * 10 + 2 + 3, (k - 1) / 6 * 20 + 3 + 3};
    }

    /** ROIs picking the objects: flat ones as named point ROIs, striped ones as area ROIs in group 3. */
    static Roi[] rois() {
        Roi[] out = new Roi[8];
        int i = 0;
        for (int k : new int[] {1, 3, 5, 7}) {
            int[] c = centre(k);
            out[i] = new PointRoi(c[0], c[1]);
            out[i++].setName("flat-" + k);
        }
        for (int k : new int[] {2, 4, 6, 8}) {
            int[] c = centre(k);
            out[i] = new Roi(c[0] - 2, c[1] - 2, 4, 4);
            out[i].setName("whatever-" + k);
            out[i++].setGroup(3);
        }
        return out;
    }

    /** The class of a ROI in group {@code g}: the group's name, "group g" when unnamed. */
    static String groupClass(int g) {
        String name = Roi.getGroupName(g);
        return name == null || name.trim().isEmpty() ? "group " + g : name.trim();
    }

    @Test
    void classOfARoiIsItsGroupElseItsNamePrefix() {
        Roi r = new Roi(0, 0, 2, 2);
        r.setName("mitotic-12");
        assertEquals("mitotic", Train_Classifier.classOf(r));
        r.setName("interphase");
        assertEquals("interphase", Train_Classifier.classOf(r));
        r.setGroup(5);
        assertEquals(groupClass(5), Train_Classifier.classOf(r));
        Roi unnamed = new Roi(0, 0, 2, 2);
        assertThrows(IllegalArgumentException.class, () -> Train_Classifier.classOf(unnamed));
    }

    @Test
    void trainThenClassifyFromRois(@TempDir Path dir) {
        Train_Classifier.Settings s = new Train_Classifier.Settings();
        s.model = dir.resolve("phenotype.json").toString();
        s.trees = 30;
        s.folds = 2;
        Classifier.Info info = Train_Classifier.train(image(), labelImage(), rois(), s);
        String striped = groupClass(3);
        assertEquals(java.util.Arrays.asList("flat", striped), info.classes);
        ResultsTable rt = Train_Classifier.table(info);
        assertEquals(2, rt.size());
        assertEquals("flat", rt.getStringValue("class", 0));
        assertEquals(4.0, rt.getValue("objects", 1));
        assertEquals(info.cvAccuracy, rt.getValue("cv_accuracy", 0), 1e-12);
        assertTrue(rt.columnExists("predicted " + striped));

        ImagePlus img = image(), lab = labelImage();
        Classifier.Result r = Classify_Objects.classify(img, lab, s.model);
        assertEquals(ClassifierTest.OBJECTS, r.labels.length);
        ResultsTable ct = Classify_Objects.table(r);
        for (int i = 0; i < r.labels.length; i++) {
            assertEquals(i + 1, (int) ct.getValue("label", i));
            assertEquals((i + 1) % 2 == 1 ? "flat" : striped, ct.getStringValue("class", i));
        }
        Overlay o = Classify_Objects.overlay(lab, r);
        assertEquals(ClassifierTest.OBJECTS, o.size());
        assertEquals("1-flat", o.get(0).getName());
        assertEquals(Classify_Objects.COLORS[1], o.get(1).getStrokeColor());
    }

    @Test
    void aRoiOnTheBackgroundIsNamed(@TempDir Path dir) {
        Train_Classifier.Settings s = new Train_Classifier.Settings();
        s.model = dir.resolve("m.json").toString();
        Roi[] rois = rois();
        rois[2] = new PointRoi(0, 0);
        rois[2].setName("flat-lost");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Train_Classifier.train(image(), labelImage(), rois, s));
        assertTrue(e.getMessage().contains("ROI 3 \"flat-lost\"") && e.getMessage().contains("background"),
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> Train_Classifier.train(image(), labelImage(), new Roi[0], s));
        assertTrue(e.getMessage().contains("ROI Manager is empty"), e.getMessage());
        ImagePlus small = new ImagePlus("small", new ByteProcessor(10, 10));
        e = assertThrows(IllegalArgumentException.class, () -> Classify_Objects.classify(small, labelImage(), s.model));
        assertTrue(e.getMessage().contains("10×10"), e.getMessage());
    }
}
