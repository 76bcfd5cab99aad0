package org.cytoseg.ij;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ij.IJ;
import ij.ImagePlus;
import ij.gui.GenericDialog;
import ij.plugin.frame.Recorder;
import java.awt.Button;
import java.awt.Window;
import java.awt.event.ActionEvent;
import java.awt.GraphicsEnvironment;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The macro Recorder writes a replayable line for Segment Image: a user fills the dialog (here a
 * thread presses OK), the Recorder captures the options, and feeding them back as macro options
 * gives the same settings.
 */
class RecorderTest {
    @Test
    void recorderWritesAReplayableLine() throws Exception {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "the Recorder needs a display (ci.sh uses xvfb-run)");
        ImagePlus imp = IJ.openImage("../../models/examples/nuclei_example.tif");
        Recorder rec = new Recorder(false);
        Recorder.record = true;
        Recorder.setCommand("Segment Image");
        Thread presser = pressOkSoon();
        Segment_Image.Settings shown = Segment_Image.dialog(imp);
        presser.join();
        assertNotNull(shown);
        String options = Recorder.getCommandOptions();
        Recorder.saveCommand();
        String text = rec.getText();
        System.out.println("Recorder: " + text.trim());
        Recorder.record = false;
        rec.close();
        assertNotNull(options, "nothing was recorded");
        assertTrue(text.contains("run(\"Segment Image\", \""), text);
        for (String key : new String[] {"model=", "channel=", "diameter=", "cellprob_threshold=", "flow_threshold=",
            "device=", "tile_size=", "tiling=", "precision="}) {
            assertTrue(options.contains(key), key + " missing from " + options);
        }
        Segment_Image.Settings replayed = PluginTest.asMacro(options.trim(), () -> Segment_Image.dialog(imp));
        assertEquals(shown.model, replayed.model);
        assertEquals(shown.channel, replayed.channel);
        assertEquals(shown.diameter, replayed.diameter);
        assertEquals(shown.cellprobThreshold, replayed.cellprobThreshold);
        assertEquals(shown.flowThreshold, replayed.flowThreshold);
        assertEquals(shown.device, replayed.device);
        assertEquals(shown.tileSize, replayed.tileSize);
        assertEquals(shown.tiling, replayed.tiling);
        assertEquals(shown.precision, replayed.precision);
        assertEquals(shown.labelImage, replayed.labelImage);
        assertEquals(shown.roiManager, replayed.roiManager);
        assertEquals(shown.results, replayed.results);
    }

    /**
     * A thread that presses OK in the next GenericDialog shown (as a user would), again every
     * second until that dialog has closed (a press that lands while the dialog is still being
     * shown can be lost), for up to two minutes (a loaded machine builds dialogs slowly).
     */
    static Thread pressOkSoon() {
        Thread presser = new Thread(() -> {
            long deadline = System.currentTimeMillis() + 120_000;
            try {
                while (System.currentTimeMillis() < deadline) {
                    for (Window w : Window.getWindows()) {
                        if (w instanceof GenericDialog && w.isShowing()) {
                            GenericDialog gd = (GenericDialog) w;
                            Button ok = gd.getButtons()[0];
                            while (gd.isShowing() && System.currentTimeMillis() < deadline) {
                                java.awt.EventQueue.invokeLater(() -> gd.actionPerformed(
                                        new ActionEvent(ok, ActionEvent.ACTION_PERFORMED, "OK")));
                                for (int k = 0; k < 20 && gd.isShowing(); k++) {
                                    Thread.sleep(50);
                                }
                            }
                            return;
                        }
                    }
                    Thread.sleep(50);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        presser.start();
        return presser;
    }

    @Test
    void trainModelRecordsAReplayableLine() throws Exception {
        Assumptions.assumeFalse(GraphicsEnvironment.isHeadless(), "the Recorder needs a display (ci.sh uses xvfb-run)");
        ImagePlus img = IJ.openImage("../../models/examples/nuclei_example.tif");
        ImagePlus lab = IJ.openImage("../../models/examples/nuclei_example_labels.tif");
        img.show();
        lab.show();
        Recorder rec = new Recorder(false);
        try {
            Recorder.record = true;
            Recorder.setCommand("Train Model");
            Thread presser = pressOkSoon();
            Train_Model.Settings shown = Train_Model.dialog();
            presser.join();
            assertNotNull(shown);
            String options = Recorder.getCommandOptions();
            Recorder.saveCommand();
            String text = rec.getText();
            System.out.println("Recorder: " + text.trim());
            assertNotNull(options, "nothing was recorded");
            assertTrue(text.contains("run(\"Train Model\", \""), text);
            for (String key : new String[] {"source=", "image=", "labels=", "parent=", "name=", "minutes=", "steps=",
                "diameter=", "channels=", "batch_size=", "crop="}) {
                assertTrue(options.contains(key), key + " missing from " + options);
            }
            Train_Model.Settings replayed = PluginTest.asMacro(options.trim(), Train_Model::dialog);
            assertEquals(shown.source, replayed.source);
            assertEquals(shown.image, replayed.image);
            assertEquals(shown.labels, replayed.labels);
            assertEquals(lab, replayed.labels, "the example's label image is preselected");
            assertEquals(shown.imagesFolder, replayed.imagesFolder);
            assertEquals(shown.parent, replayed.parent);
            assertEquals(shown.name, replayed.name);
            assertEquals(shown.minutes, replayed.minutes);
            assertEquals(shown.steps, replayed.steps);
            assertEquals(shown.diameter, replayed.diameter);
            assertEquals(shown.channels, replayed.channels);
            assertEquals(shown.batchSize, replayed.batchSize);
            assertEquals(shown.crop, replayed.crop);
            assertEquals(shown.showLossCurve, replayed.showLossCurve);
        } finally {
            Recorder.record = false;
            rec.close();
            img.changes = false;
            lab.changes = false;
            img.close();
            lab.close();
        }
    }
}
