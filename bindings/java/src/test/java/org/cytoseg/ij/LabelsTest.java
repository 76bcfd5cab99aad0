package org.cytoseg.ij;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.ImagePlus;
import ij.gui.Roi;
import ij.measure.Calibration;
import ij.process.FloatProcessor;
import java.awt.Rectangle;
import org.junit.jupiter.api.Test;

/** Label image building, ROIs, label reading (no ONNX Runtime needed) and stitching planes. */
class LabelsTest {
    @Test
    void sixteenBitUpTo65535ThenFloat() {
        int[] a = {0, 1, 65535, 2};
        ImagePlus small = Labels.image("s", Labels.single(a), 2, 2, 1, 1, 65535, null);
        assertEquals(16, small.getBitDepth());
        assertEquals(65535, small.getProcessor().get(0, 1));
        int[] b = {0, 1, 70000, 2};
        ImagePlus big = Labels.image("b", Labels.single(b), 2, 2, 1, 1, 70000, null);
        assertEquals(32, big.getBitDepth());
        assertEquals(70000f, big.getProcessor().getf(0, 1));
    }

    @Test
    void calibrationIsCopied() {
        Calibration cal = new Calibration();
        cal.pixelWidth = 0.25;
        cal.pixelHeight = 0.5;
        cal.setUnit("mm");
        ImagePlus im = Labels.image("c", Labels.single(new int[4]), 2, 2, 1, 1, 0, cal);
        assertEquals(0.25, im.getCalibration().pixelWidth);
        assertEquals(0.5, im.getCalibration().pixelHeight);
        assertEquals("mm", im.getCalibration().getUnit());
    }

    @Test
    void oneRoiPerObjectCoveringExactlyItsPixels() {
        int w = 6, h = 5;
        int[] l = new int[w * h];
        for (int y = 1; y <= 2; y++) for (int x = 1; x <= 3; x++) l[y * w + x] = 1;
        l[4 * w + 5] = 3;
        Roi[] rois = Labels.rois(l, w, h, 3);
        assertEquals(4, rois.length);
        assertNull(rois[2]);
        assertEquals(new Rectangle(1, 1, 3, 2), rois[1].getBounds());
        assertEquals(new Rectangle(5, 4, 1, 1), rois[3].getBounds());
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                assertEquals(l[y * w + x] == 1, rois[1].contains(x, y), x + "," + y);
            }
        }
    }

    @Test
    void floatLabelsMustBeNonNegativeIntegers() {
        FloatProcessor fp = new FloatProcessor(2, 1, new float[] {1f, 2.5f});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Labels.toInts(fp, "x"));
        assertTrue(e.getMessage().contains("2.5"), e.getMessage());
        assertEquals(3, Labels.toInts(new FloatProcessor(1, 1, new float[] {3f}), "y")[0]);
    }

    @Test
    void stitchPlanesMakesA3dLabelStack() {
        int[][] planes = {{1, 1, 0, 0}, {1, 1, 0, 0}, {0, 0, 1, 1}};
        java.util.List<int[]> list = new java.util.ArrayList<>();
        for (int[] p : planes) {
            list.add(p);
        }
        ImagePlus stack = Labels.image("cells", list, 2, 2, 3, 1, 1, null);
        ImagePlus out = Stitch_Planes.stitch(stack, 0.25, 0);
        assertEquals("cells-3D", out.getTitle());
        assertEquals(3, out.getStackSize());
        // Planes 0 and 1 overlap fully (one object), plane 2's mask touches neither: a new id.
        assertEquals(1, out.getStack().getProcessor(2).get(0, 0));
        assertEquals(2, out.getStack().getProcessor(3).get(0, 1));
        assertEquals(2, out.getProperty("cytoseg.objects"));
        ImagePlus one = Labels.image("one", Labels.single(new int[4]), 2, 2, 1, 1, 0, null);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Stitch_Planes.stitch(one, 0.25, 0));
        assertTrue(e.getMessage().contains("one plane"), e.getMessage());
    }
}
