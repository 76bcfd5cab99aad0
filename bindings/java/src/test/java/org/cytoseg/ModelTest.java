package org.cytoseg;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.IJ;
import ij.ImagePlus;
import java.io.File;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Segmentation through the JNI layer with the bundled model (needs ONNX Runtime). */
class ModelTest {
    static Model model;
    static short[] pixels;
    static int w, h;

    static File example() {
        return new File("../../models/examples/nuclei_example.tif");
    }

    @BeforeAll
    static void load() {
        try {
            Cytoseg.runtime();
        } catch (CytosegException e) {
            Assumptions.assumeTrue(false, "ONNX Runtime not found, skipping: " + e.getMessage());
        }
        model = Model.load("nuclei", "cpu", 0);
        ImagePlus imp = IJ.openImage(example().getPath());
        w = imp.getWidth();
        h = imp.getHeight();
        pixels = (short[]) imp.getProcessor().getPixels();
    }

    @AfterAll
    static void close() {
        if (model != null) {
            model.close();
            model.close(); // twice is harmless
        }
    }

    @Test
    void infoDescribesTheModel() {
        assertEquals("nuclei", model.info().get("name"));
        assertEquals("cpu", model.device());
        assertTrue(model.info().get("onnxruntime_version").matches("\\d+\\.\\d+.*"));
    }

    @Test
    void segmentsTheSameInEveryPixelType() {
        int[] a = new int[w * h];
        int n = model.segment(pixels, w, h, 1, null, a, null);
        assertTrue(n > 10, "objects: " + n);
        int max = 0;
        for (int v : a) max = Math.max(max, v);
        assertEquals(n, max);
        float[] f = new float[pixels.length];
        for (int i = 0; i < f.length; i++) f[i] = pixels[i] & 0xffff;
        int[] b = new int[w * h];
        assertEquals(n, model.segment(f, w, h, 1, null, b, null));
        assertArrayEquals(a, b);
    }

    @Test
    void sixteenBitIsReadUnsigned() {
        // Shift intensities above 32767: read as signed they would wrap to negative values.
        short[] high = new short[pixels.length];
        for (int i = 0; i < high.length; i++) high[i] = (short) ((pixels[i] & 0xffff) + 32768);
        float[] f = new float[pixels.length];
        for (int i = 0; i < f.length; i++) f[i] = (high[i] & 0xffff);
        int[] a = new int[w * h], b = new int[w * h];
        model.segment(high, w, h, 1, null, a, null);
        model.segment(f, w, h, 1, null, b, null);
        assertArrayEquals(a, b);
    }

    @Test
    void listenerSeesProgressAndCancels() {
        SegmentOptions o = new SegmentOptions();
        o.tileSize = 128;
        o.batchSize = 1;
        int[] calls = new int[1];
        CytosegException e = assertThrows(CytosegException.class,
                () -> model.segment(pixels, w, h, 1, o, new int[w * h], (done, total) -> {
                    calls[0]++;
                    assertTrue(total > 1 && done >= 1 && done <= total);
                    return false;
                }));
        assertTrue(e.isCancelled());
        assertEquals(1, calls[0]);
    }

    @Test
    void listenerExceptionReachesTheCaller() {
        RuntimeException mine = new RuntimeException("stop here");
        RuntimeException got = assertThrows(RuntimeException.class,
                () -> model.segment(pixels, w, h, 1, null, new int[w * h], (d, t) -> {
                    throw mine;
                }));
        assertSame(mine, got);
    }

    @Test
    void badShapesAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> model.segment(pixels, w + 1, h, 1, null, new int[(w + 1) * h], null));
        assertThrows(IllegalArgumentException.class, () -> model.segment(pixels, w, h, 1, null, new int[5], null));
        assertThrows(IllegalArgumentException.class, () -> model.segment(new int[4], 2, 2, 1, null, new int[4], null));
        SegmentOptions o = new SegmentOptions();
        o.tileSize = 100; // not a multiple of 16
        CytosegException e = assertThrows(CytosegException.class, () -> model.segment(pixels, w, h, 1, o, new int[w * h], null));
        assertTrue(e.getMessage().contains("tile size"), e.getMessage());
    }

    @Test
    void oneModelFromSeveralThreads() throws Exception {
        int[] ref = new int[w * h];
        model.segment(pixels, w, h, 1, null, ref, null);
        int threads = 3;
        int[][] out = new int[threads][w * h];
        AtomicReference<Throwable> err = new AtomicReference<>();
        Thread[] ts = new Thread[threads];
        for (int i = 0; i < threads; i++) {
            final int k = i;
            ts[i] = new Thread(() -> {
                try {
                    model.segment(pixels, w, h, 1, null, out[k], null);
                } catch (Throwable t) {
                    err.set(t);
                }
            });
            ts[i].start();
        }
        for (Thread t : ts) t.join();
        if (err.get() != null) throw new AssertionError(err.get());
        for (int[] o : out) assertArrayEquals(ref, o);
    }

    @Test
    void closeFromTheListenerIsRefusedInsteadOfDeadlocking() {
        Model m = Model.load("nuclei", "cpu", 1);
        SegmentOptions o = new SegmentOptions();
        o.tileSize = 128;
        o.batchSize = 1;
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> m.segment(pixels, w, h, 1, o, new int[w * h], (d, t) -> {
                    m.close();
                    return true;
                }));
        assertTrue(e.getMessage().contains("close()"), e.getMessage());
        m.close();
        assertThrows(IllegalStateException.class, () -> m.segment(pixels, w, h, 1, null, new int[w * h], null));
    }

    @Test
    void closedModelIsRefused() {
        Model m = Model.load("nuclei", "cpu", 1);
        m.close();
        assertThrows(IllegalStateException.class, () -> m.segment(pixels, w, h, 1, null, new int[w * h], null));
    }
}
