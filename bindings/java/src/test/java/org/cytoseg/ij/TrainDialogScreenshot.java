package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.gui.GenericDialog;
import java.awt.Button;
import java.awt.EventQueue;
import java.awt.Rectangle;
import java.awt.Robot;
import java.awt.Window;
import java.awt.event.ActionEvent;
import java.awt.image.BufferedImage;
import java.io.File;
import javax.imageio.ImageIO;

/**
 * Takes the screenshot of the Train Model dialog for the documentation
 * (docs/images/fiji-train.png): opens the example image and its label image, shows the dialog,
 * captures it from the screen and presses Cancel. Run on demand by
 * {@code src/test/ij/screenshot_train.sh} under Xvfb; not a test.
 */
public final class TrainDialogScreenshot {
    private TrainDialogScreenshot() {}

    /**
     * @param args the PNG file to write
     * @throws Exception when the dialog does not appear or the file cannot be written
     */
    public static void main(String[] args) throws Exception {
        File out = new File(args[0]);
        ImagePlus img = IJ.openImage("../../models/examples/nuclei_example.tif");
        ImagePlus lab = IJ.openImage("../../models/examples/nuclei_example_labels.tif");
        img.show();
        lab.show();
        Exception[] failed = {null};
        Thread shooter = new Thread(() -> {
            try {
                for (int i = 0; i < 400; i++) {
                    for (Window w : Window.getWindows()) {
                        if (w instanceof GenericDialog && w.isShowing()) {
                            GenericDialog gd = (GenericDialog) w;
                            Thread.sleep(1500); // laid out and painted
                            EventQueue.invokeAndWait(() -> gd.toFront());
                            Thread.sleep(500);
                            Rectangle r = gd.getBounds();
                            BufferedImage shot = new Robot().createScreenCapture(r);
                            ImageIO.write(shot, "png", out);
                            Button cancel = gd.getButtons()[1];
                            EventQueue.invokeLater(() -> gd.actionPerformed(
                                    new ActionEvent(cancel, ActionEvent.ACTION_PERFORMED, "Cancel")));
                            return;
                        }
                    }
                    Thread.sleep(50);
                }
                failed[0] = new IllegalStateException("the Train Model dialog did not appear");
            } catch (Exception e) {
                failed[0] = e;
            }
        });
        shooter.start();
        Train_Model.dialog();
        shooter.join();
        if (failed[0] != null) {
            throw failed[0];
        }
        System.out.println("wrote " + out + " (" + out.length() + " bytes)");
        System.exit(0);
    }
}
