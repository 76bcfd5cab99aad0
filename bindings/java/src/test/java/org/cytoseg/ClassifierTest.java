package org.cytoseg;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The object classifier through JNI, without ONNX Runtime, on a synthetic image (as tests/c/test_classify_images.c). */
public class ClassifierTest {
    /** Image size and objects. */
    public static final int W = 60, H = 40, OBJECTS = 12;
    static final int[] PICK_LABELS = {1, 3, 5, 7, 2, 4, 6, 8};
    static final String[] PICK_CLASSES = {"flat", "flat", "flat", "flat", "striped", "striped", "striped", "striped"};

    /** 12 square objects: odd labels bright and flat, even labels dim and striped. */
    public static int[] labels() {
        int[] l = new int[W * H];
        for (int k = 1; k <= OBJECTS; k++) {
            int r0 = (k - 1) / 6 * 20 + 3, c0 = (k - 1) % 6 * 10 + 2;
            for (int r = r0; r < r0 + 6 + k % 3; r++) for (int c = c0; c < c0 + 6; c++) l[r * W + c] = k;
        }
        return l;
    }

    /** @return the pixels of the image of {@code l} */
    public static byte[] image(int[] l) {
        byte[] px = new byte[W * H];
        for (int i = 0; i < px.length; i++) {
            int k = l[i], r = i / W;
            px[i] = (byte) (k == 0 ? 10 : k % 2 == 1 ? 200 : 60 + 40 * (r % 2));
        }
        return px;
    }

    @Test
    void trainsOnPicksAndClassifiesEveryObject(@TempDir Path dir) throws Exception {
        int[] l = labels();
        byte[] px = image(l);
        String model = dir.resolve("m.json").toString();
        Classifier.Info info = Classifier.train(px, 1, l, W, H, PICK_LABELS, PICK_CLASSES, "cells", 1, 1, "pixel", 30,
                1, 2, model);
        assertEquals(Arrays.asList("flat", "striped"), info.classes);
        assertArrayEquals(new long[] {4, 4}, info.objectsPerClass);
        assertEquals(8, info.confusion[0][0] + info.confusion[0][1] + info.confusion[1][0] + info.confusion[1][1]);
        assertTrue(info.cvAccuracy >= 0 && info.cvAccuracy <= 1);
        assertEquals(2, info.folds);
        String json = new String(Files.readAllBytes(dir.resolve("m.json")), "UTF-8");
        assertTrue(json.contains("\"format\": \"cytoseg-classifier\""), json.substring(0, 200));
        assertTrue(json.contains("\"path\": \"cells\""));
        assertEquals(info.cvAccuracy, Classifier.info(model).cvAccuracy);
        Classifier.Result r = Classifier.classify(model, px, 1, l, W, H, 1, 1, "pixel");
        assertEquals(OBJECTS, r.labels.length);
        for (int i = 0; i < OBJECTS; i++) {
            assertEquals(i + 1, r.labels[i]);
            assertEquals((i + 1) % 2 == 1 ? "flat" : "striped", r.className(i));
            assertTrue(r.probability[i] >= 0.5 && r.probability[i] <= 1.0);
        }
    }

    @Test
    void badPicksAndInputsAreNamed(@TempDir Path dir) {
        int[] l = labels();
        byte[] px = image(l);
        String model = dir.resolve("m.json").toString();
        int[] onBackground = {1, 3, 5, 7, 2, 4, 0, 8};
        CytosegException e = assertThrows(CytosegException.class, () -> Classifier.train(px, 1, l, W, H,
                onBackground, PICK_CLASSES, "cells", 1, 1, "pixel", 10, 1, 2, model));
        assertTrue(e.getMessage().contains("sample 'cells', pick 6") && e.getMessage().contains("background"),
                e.getMessage());
        assertEquals(101, e.status());
        String[] oneClass = new String[8];
        Arrays.fill(oneClass, "flat");
        e = assertThrows(CytosegException.class, () -> Classifier.train(px, 1, l, W, H, PICK_LABELS, oneClass, "cells",
                1, 1, "pixel", 10, 1, 2, model));
        assertTrue(e.getMessage().contains("only one class"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Classifier.train(px, 1, l, W, H, PICK_LABELS,
                Arrays.copyOf(PICK_CLASSES, 3), "cells", 1, 1, "pixel", 10, 1, 2, model));
        assertThrows(IllegalArgumentException.class, () -> Classifier.train(px, 1, Arrays.copyOf(l, 10), W, H,
                PICK_LABELS, PICK_CLASSES, "cells", 1, 1, "pixel", 10, 1, 2, model));
        assertThrows(NullPointerException.class, () -> Classifier.train(null, 1, l, W, H, PICK_LABELS, PICK_CLASSES,
                "cells", 1, 1, "pixel", 10, 1, 2, model));
        assertFalse(Files.exists(dir.resolve("m.json")), "nothing is written on failure");
        Classifier.train(px, 1, l, W, H, PICK_LABELS, PICK_CLASSES, "cells", 1, 1, "pixel", 10, 1, 2, model);
        e = assertThrows(CytosegException.class, () -> Classifier.classify(model, px, 1, l, W, H, 0.5, 0.5, "um"));
        assertTrue(e.getMessage().contains("lacks the classifier's feature column(s) area"), e.getMessage());
        e = assertThrows(CytosegException.class, () -> Classifier.info(dir.resolve("none.json").toString()));
        assertEquals(300, e.status());
    }
}
