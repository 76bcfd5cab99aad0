package org.cytoseg;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The JNI layer without ONNX Runtime: versions, errors, panics, metrics, measurements. */
class NativeTest {
    @Test
    void versionIsTheCrateVersion() {
        assertTrue(Native.version().matches("\\d+\\.\\d+\\.\\d+.*"), Native.version());
    }

    @Test
    void panicBecomesIllegalStateAndTheLibraryStaysUsable() {
        IllegalStateException e = assertThrows(IllegalStateException.class, Native::panicForTest);
        assertTrue(e.getMessage().contains("internal error"), e.getMessage());
        assertTrue(e.getMessage().contains("panicForTest was called"), e.getMessage());
        assertFalse(Native.version().isEmpty());
    }

    @Test
    void evaluateIdenticalLabelsIsPerfect() {
        int[] a = {0, 1, 1, 0, 2, 2, 0, 3, 3};
        Evaluation e = Evaluation.evaluate(a, a.clone(), new double[] {0.5, 0.9}, "iou");
        assertEquals(2, e.stats.length);
        for (Evaluation.Stats s : e.stats) {
            assertEquals(3, s.tp);
            assertEquals(0, s.fp);
            assertEquals(1.0, s.ap);
            assertEquals(1.0, s.f1);
            assertEquals(1.0, s.panopticQuality);
        }
        assertEquals(1.0, e.dice);
    }

    @Test
    void evaluateCountsAMissedObject() {
        int[] truth = {1, 1, 0, 2, 2, 0};
        int[] pred = {1, 1, 0, 0, 0, 0};
        Evaluation.Stats s = Evaluation.evaluate(truth, pred, new double[] {0.5}, "iou").stats[0];
        assertEquals(1, s.tp);
        assertEquals(1, s.fn);
        assertEquals(0, s.fp);
        assertEquals(0.5, s.ap, 1e-12);
        assertEquals(0.5, s.recall, 1e-12);
        assertEquals(1.0, s.precision, 1e-12);
    }

    @Test
    void stitchLabelsLinksPlanesAsCellpose() {
        // Three 2×6 planes (rows alike): mask 1 continues, mask 2 of plane 1 overlaps too little.
        int[][] planes = {{1, 1, 1, 0, 2, 2}, {1, 1, 0, 0, 0, 2}, {2, 2, 1, 0, 0, 0}};
        int[][] want = {{1, 1, 1, 0, 2, 2}, {1, 1, 0, 0, 0, 2}, {1, 1, 3, 0, 0, 0}};
        int[] v = new int[36], w = new int[36];
        for (int z = 0; z < 3; z++) {
            for (int y = 0; y < 2; y++) {
                System.arraycopy(planes[z], 0, v, (z * 2 + y) * 6, 6);
                System.arraycopy(want[z], 0, w, (z * 2 + y) * 6, 6);
            }
        }
        int[] before = v.clone();
        assertArrayEquals(w, Native.stitchLabels(v, 3, 6, 2, 0.25, 0));
        assertArrayEquals(before, v, "the input is not changed");
        CytosegException t = assertThrows(CytosegException.class, () -> Native.stitchLabels(v, 3, 6, 2, 0.0, 0));
        assertEquals(101, t.status());
        CytosegException s = assertThrows(CytosegException.class, () -> Native.stitchLabels(v, 4, 6, 2, 0.25, 0));
        assertEquals(102, s.status());
        v[0] = -1;
        assertThrows(IllegalArgumentException.class, () -> Native.stitchLabels(v, 3, 6, 2, 0.25, 0));
        assertThrows(NullPointerException.class, () -> Native.stitchLabels(null, 3, 6, 2, 0.25, 0));
    }

    @Test
    void engineErrorsBecomeCytosegExceptionsWithTheirStatus() {
        CytosegException e = assertThrows(CytosegException.class,
                () -> Native.evaluate(new int[4], new int[5], new double[] {0.5}, "iou"));
        assertEquals(102, e.status());
        assertTrue(e.getMessage().contains("4") && e.getMessage().contains("5"), e.getMessage());
        CytosegException c = assertThrows(CytosegException.class,
                () -> Native.evaluate(new int[4], new int[4], new double[] {0.5}, "dice"));
        assertEquals(101, c.status());
    }

    @Test
    void badArgumentsBecomeJdkExceptions() {
        assertThrows(NullPointerException.class, () -> Native.evaluate(null, new int[1], new double[] {0.5}, "iou"));
        // A threshold outside [0, 1] is the engine's check: the C API's status 101, same message.
        CytosegException t = assertThrows(CytosegException.class,
                () -> Native.evaluate(new int[1], new int[1], new double[] {1.5}, "iou"));
        assertEquals(101, t.status());
        assertThrows(IllegalStateException.class,
                () -> Native.segmentBytes(0, new byte[4], 2, 2, 1, new double[10], new int[4], null, null));
    }

    @Test
    void missingModelNamesItself() {
        CytosegException e = assertThrows(CytosegException.class, () -> Model.load("no-such-model", "cpu", 0));
        assertEquals(CytosegException.MODEL, e.status());
        assertTrue(e.getMessage().contains("no-such-model"), e.getMessage());
    }

    @Test
    void measureGivesOneRowPerObject() {
        int[] labels = {1, 1, 0, 0, 0, 2, 2, 2, 0};
        short[] image = {10, 20, 0, 0, 0, 5, 5, 5, 0};
        Table t = Native.measure(labels, 3, 3, image, 1, 1.0, 1.0, "pixel");
        assertEquals(2, t.rows());
        int area = t.indexOf("area");
        assertTrue(area >= 0);
        assertEquals(2.0, t.get(area, 0));
        assertEquals(3.0, t.get(area, 1));
        int mean = t.indexOf("intensity_mean");
        assertEquals(15.0, t.get(mean, 0), 1e-12);
        assertArrayEquals(new double[] {1, 2}, new double[] {t.get(t.indexOf("label"), 0), t.get(t.indexOf("label"), 1)});
        Table cal = Native.measure(labels, 3, 3, null, 1, 0.5, 0.5, "um");
        assertEquals(0.5, cal.get(cal.indexOf("area"), 0), 1e-12);
        assertFalse(cal.unit(cal.indexOf("area")).isEmpty());
    }

    @Test
    void measureVolumeMeasuresObjectsThroughPlanes() {
        // Two planes of 3×3: object 1 spans both planes (4 voxels), object 2 one plane.
        int[] labels = {1, 1, 0, 0, 0, 0, 0, 0, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0};
        float[] image = new float[18];
        for (int i = 0; i < 18; i++) image[i] = i;
        Table t = Native.measureVolume(labels, 3, 3, 2, image, 1, 0.5, 0.5, 2.0, "um");
        assertEquals(2, t.rows());
        assertEquals(4 * 0.5 * 0.5 * 2.0, t.get(t.indexOf("area"), 0), 1e-12);
        assertEquals(1.0, t.get(t.indexOf("centroid-0"), 0), 1e-12); // z 0 and 1, spacing 2
        assertEquals((0 + 1 + 9 + 10) / 4.0, t.get(t.indexOf("intensity_mean"), 0), 1e-12);
        assertEquals(8.0, t.get(t.indexOf("intensity_mean"), 1), 1e-12);
        // An intensity stack of the wrong size is refused, naming the sizes.
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Native.measureVolume(labels, 3, 3, 2, new float[9], 1, 1.0, 1.0, 1.0, "pixel"));
        assertTrue(e.getMessage().contains("3×3×2 planes"), e.getMessage());
    }

    @Test
    void keyValuesParse() {
        assertEquals("a=b", Native.parseKeyValues("k=a=b\nx=1\n").get("k"));
    }
}
