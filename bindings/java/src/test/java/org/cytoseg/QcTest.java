package org.cytoseg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Quality control through JNI, without ONNX Runtime: one image's measures, a run's report. */
public class QcTest {
    static final int W = 30, H = 20;

    /** Two rectangles (label 4 at 200, label 9 at 100) on a background of 10, as tests/c/test_measure.c. */
    static int[] labels() {
        int[] l = new int[W * H];
        for (int y = 2; y <= 5; y++) for (int x = 3; x <= 10; x++) l[y * W + x] = 4;
        for (int y = 10; y <= 18; y++) for (int x = 20; x <= 24; x++) l[y * W + x] = 9;
        return l;
    }

    static double cell(Table t, String name) {
        int c = t.indexOf(name);
        assertTrue(c >= 0, "no column " + name);
        return t.get(c, 0);
    }

    @Test
    void imageQcGivesTheCApisNumbers() {
        int[] l = labels();
        byte[] img = new byte[W * H];
        for (int k = 0; k < img.length; k++) img[k] = (byte) (l[k] == 4 ? 200 : l[k] == 9 ? 100 : 10);
        Table t = Qc.imageQc(l, W, H, img, 1, null, 1, 1, "pixel");
        assertEquals(1, t.rows());
        assertEquals(2.0, cell(t, "objects"));
        assertEquals(10.0, cell(t, "background"));
        assertEquals(100.0, cell(t, "signal"));
        assertEquals(32.0 / 600.0, cell(t, "saturated_fraction"), 1e-12);
        assertEquals(190.0 / 255.0, cell(t, "dynamic_range"), 1e-12);
        assertEquals(6.5, cell(t, "area_iqr"), 1e-12);
        assertTrue(Double.isNaN(cell(t, "mean_cellprob")));
        // With flows (cellprob logit 0: probability 0.5) and a calibration.
        Table f = Qc.imageQc(l, W, H, img, 1, new float[3 * W * H], 0.5, 0.5, "um");
        assertEquals(0.5, cell(f, "mean_cellprob"));
        assertEquals(6.5 * 0.25, cell(f, "area_iqr"), 1e-12);
        assertEquals("um^2", f.unit(f.indexOf("area_iqr")));
    }

    @Test
    void imageQcRefusesBadInput() {
        int[] l = labels();
        byte[] img = new byte[W * H];
        assertThrows(NullPointerException.class, () -> Qc.imageQc(l, W, H, null, 1, null, 1, 1, "pixel"));
        CytosegException e = assertThrows(CytosegException.class,
                () -> Qc.imageQc(l, W, H, img, 1, new float[5], 1, 1, "pixel"));
        assertTrue(e.getMessage().contains("flows"), e.getMessage());
        CytosegException c = assertThrows(CytosegException.class,
                () -> Native.imageQc(l, W, H, img, 1, 2, null, 1, 1, "pixel"));
        assertEquals(CytosegException.INVALID, c.status());
        assertThrows(IllegalArgumentException.class, () -> Qc.imageQc(l, W, H, "x", 1, null, 1, 1, "pixel"));
    }

    /** A segmentation output folder with a hand-written summary.csv: 12 images, two scopes. */
    public static Path run() throws Exception {
        Path dir = Files.createTempDirectory("cytoseg-qc");
        StringBuilder b = new StringBuilder("file,status,objects,area_median,focus_laplacian,signal\n");
        for (int k = 0; k < 12; k++) {
            b.append(String.format(java.util.Locale.ROOT, "/data/%s/img%02d.tif,ok,%d,%d,%.3f,%d%n",
                    k < 6 ? "scopeA" : "scopeB", k, k == 3 ? 0 : 40 + k, 100 + k, 0.2 + 0.01 * k, 500 + 3 * k));
        }
        Files.write(dir.resolve("summary.csv"), b.toString().getBytes(StandardCharsets.UTF_8));
        return dir;
    }

    @Test
    void reportWritesThePageAndCountsFlags() throws Exception {
        Path dir = run();
        QcOptions o = new QcOptions();
        o.pattern = "{scope}/*.tif";
        o.groupBy = "scope";
        Map<String, String> v = Qc.report(dir.toString(), o);
        assertEquals(dir.resolve("qc").resolve("qc_report.html").toString(), v.get("html"));
        assertTrue(Files.size(dir.resolve("qc/qc_report.html")) > 1000);
        assertTrue(Files.exists(dir.resolve("qc/qc_images.csv")));
        assertEquals("12", v.get("images"));
        assertEquals("2", v.get("groups"));
        assertTrue(Integer.parseInt(v.get("flagged")) >= 1, v.toString());
        assertEquals("false", v.get("confounded"));
        assertEquals("1", Qc.report(dir.toString(), null).get("groups"));
    }

    @Test
    void reportErrorsNameTheProblem() throws Exception {
        Path dir = run();
        QcOptions o = new QcOptions();
        o.groupBy = "plate";
        CytosegException e = assertThrows(CytosegException.class, () -> Qc.report(dir.toString(), o));
        assertEquals(CytosegException.INVALID, e.status());
        assertTrue(e.getMessage().contains("plate"), e.getMessage());
        e = assertThrows(CytosegException.class, () -> Qc.report("/no/such/run", null));
        assertTrue(e.getMessage().contains("summary.csv"), e.getMessage());
        e = assertThrows(CytosegException.class, () -> Native.qcReport(dir.toString(), "{\"z\": -1}"));
        assertTrue(e.getMessage().contains("z must be"), e.getMessage());
        assertThrows(NullPointerException.class, () -> Native.qcReport(null, null));
    }

    @Test
    void optionsCrossAsJson() {
        QcOptions o = new QcOptions();
        assertEquals("{}", o.toJson());
        o.pattern = "{a}\\\"b\".tif";
        o.groupBy = "a, b";
        assertEquals("{\"pattern\": \"{a}\\\\\\\"b\\\".tif\", \"group_by\": \"a, b\"}", o.toJson());
    }
}
