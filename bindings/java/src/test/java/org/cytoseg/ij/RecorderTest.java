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
        Thread presser = new Thread(() -> {
            for (int i = 0; i < 200; i++) {
                for (Window w : Window.getWindows()) {
                    if (w instanceof GenericDialog && w.isShowing()) {
                        GenericDialog gd = (GenericDialog) w;
                        Button ok = gd.getButtons()[0];
                        java.awt.EventQueue.invokeLater(() -> gd.actionPerformed(new ActionEvent(ok, ActionEvent.ACTION_PERFORMED, "OK")));
                        return;
                    }
                }
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        presser.start();
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
            "device=", "tile_size="}) {
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
        assertEquals(shown.labelImage, replayed.labelImage);
        assertEquals(shown.roiManager, replayed.roiManager);
        assertEquals(shown.results, replayed.results);
    }
}
