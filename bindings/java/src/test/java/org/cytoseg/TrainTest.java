package org.cytoseg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.ImagePlus;
import ij.io.FileSaver;
import ij.process.ShortProcessor;
import java.io.File;
import java.nio.file.Files;
import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Native fine-tuning through the JNI layer (no ONNX Runtime needed): cancel, resume, errors. */
class TrainTest {
    /** Dark discs on a bright noisy background, and their labels, as 16-bit TIFFs. */
    static void writePair(File images, File labels, String name, long seed) {
        int n = 80;
        Random r = new Random(seed);
        ShortProcessor img = new ShortProcessor(n, n);
        ShortProcessor lbl = new ShortProcessor(n, n);
        int count = 0;
        for (int k = 0; k < 12; k++) {
            int cy = 8 + r.nextInt(n - 16), cx = 8 + r.nextInt(n - 16);
            boolean free = true;
            for (int y = Math.max(0, cy - 9); y < Math.min(n, cy + 9); y++) {
                for (int x = Math.max(0, cx - 9); x < Math.min(n, cx + 9); x++) {
                    free &= lbl.get(x, y) == 0;
                }
            }
            if (!free) {
                continue;
            }
            count++;
            for (int y = 0; y < n; y++) {
                for (int x = 0; x < n; x++) {
                    if ((y - cy) * (y - cy) + (x - cx) * (x - cx) <= 36) {
                        lbl.set(x, y, count);
                    }
                }
            }
        }
        for (int i = 0; i < n * n; i++) {
            img.set(i, (lbl.get(i) > 0 ? 1500 : 4000) + r.nextInt(600));
        }
        new FileSaver(new ImagePlus(name, img)).saveAsTiff(new File(images, name + ".tif").getPath());
        new FileSaver(new ImagePlus(name, lbl)).saveAsTiff(new File(labels, name + ".tif").getPath());
    }

    @Test
    void trainCancelResumeAndErrors() throws Exception {
        File root = Files.createTempDirectory("cytoseg-train-java").toFile();
        File images = new File(root, "images"), labels = new File(root, "labels");
        assertTrue(images.mkdirs() && labels.mkdirs());
        writePair(images, labels, "a", 1);
        writePair(images, labels, "b", 2);
        Map<String, Double> change = new HashMap<>();
        change.put("steps", 6.0);
        change.put("batch_size", 2.0);
        change.put("crop", 64.0);
        change.put("diameter", 17.1);
        double[] options = Native.trainOptions(change);
        assertEquals(Native.parseKeyValues(Native.trainDefaults()).size(), options.length);
        File out = new File(root, "clone");
        String parent = new File("../../models/nuclei").getAbsolutePath();
        long[] seen = {0};
        CytosegException cancelled = assertThrows(CytosegException.class, () -> Native.train(parent,
                images.getPath(), labels.getPath(), null, null, null, out.getPath(), options, false,
                "TrainTest", (step, steps, loss, val, lr, el, eta) -> {
                    seen[0] = step;
                    return step < 3;
                }));
        assertEquals(3, seen[0]);
        assertTrue(cancelled.getMessage().toLowerCase().contains("cancel"), cancelled.getMessage());
        assertTrue(new File(out, "checkpoint.cytoseg-train").isFile());
        double[] r = Native.train(parent, images.getPath(), labels.getPath(), null, null, null,
                out.getPath(), options, true, "TrainTest", null);
        assertEquals(6.0, r[0]);
        assertEquals(2.0, r[4]);
        assertTrue(new File(out, "model.onnx").isFile() && new File(out, "manifest.json").isFile());
        String manifest = new String(Files.readAllBytes(new File(out, "manifest.json").toPath()), "UTF-8");
        assertTrue(manifest.contains("\"lineage\"") && manifest.contains("TrainTest"), manifest);
        // errors name the problem; nothing is written
        File never = new File(root, "never");
        CytosegException e = assertThrows(CytosegException.class, () -> Native.train(parent,
                new File(root, "missing").getPath(), labels.getPath(), null, null, null,
                never.getPath(), options, false, null, null));
        assertTrue(e.getMessage().contains("missing"), e.getMessage());
        assertTrue(!never.exists());
        assertThrows(CytosegException.class, () -> Native.train(parent, images.getPath(),
                labels.getPath(), null, null, null, never.getPath(), new double[3], false, null, null));
        assertThrows(IllegalArgumentException.class, () -> Native.trainOptions(Map.of("nope", 1.0)));
    }
}
