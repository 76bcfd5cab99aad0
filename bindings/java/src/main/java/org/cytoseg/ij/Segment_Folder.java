package org.cytoseg.ij;

import ij.IJ;
import ij.Macro;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import org.cytoseg.CytosegException;
import org.cytoseg.Cytoseg;
import org.cytoseg.Models;
import org.cytoseg.Native;

/**
 * Plugins &gt; cytoseg &gt; Segment Folder: runs {@code cytoseg segment INPUT --out OUTPUT} with
 * the dialog's settings in this process (the engine's own batch code), so it writes exactly what
 * the command writes: {@code <stem>_labels.tif}, {@code <stem>_objects.csv}, {@code summary.csv},
 * {@code run.json}; finished images are skipped when run again. Macro:
 * {@code run("Segment Folder", "input=/data/in output=/data/out model=nuclei channel=mean
 * diameter=0 cellprob_threshold=0 flow_threshold=0.4 device=auto tile_size=0");}
 */
public class Segment_Folder implements PlugIn {
    private static final String P = "cytoseg.folder.";

    @Override
    public void run(String arg) {
        GenericDialog gd = new GenericDialog("cytoseg: Segment Folder");
        gd.addStringField("input", Prefs.get(P + "input", ""), 40);
        gd.addStringField("output", Prefs.get(P + "output", ""), 40);
        String[] models = Engine.modelChoices();
        gd.addChoice("model", models, Prefs.get(P + "model", models[0]));
        gd.addStringField("model_file", Prefs.get(P + "model_file", ""), 30);
        gd.addStringField("channel", Prefs.get(P + "channel", "mean"), 6);
        gd.addNumericField("diameter", Prefs.get(P + "diameter", 0), 1, 6, "pixels (0 = the model's)");
        gd.addNumericField("cellprob_threshold", Prefs.get(P + "cellprob_threshold", 0.0), 2);
        gd.addNumericField("flow_threshold", Prefs.get(P + "flow_threshold", 0.4), 2);
        gd.addChoice("device", Engine.DEVICES, Prefs.get(P + "device", "auto"));
        gd.addNumericField("tile_size", Prefs.get(P + "tile_size", 0), 0, 6, "pixels (0 = the model's)");
        gd.addCheckbox("recursive", false);
        gd.addCheckbox("overwrite", false);
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        String input = gd.getNextString().trim();
        String output = gd.getNextString().trim();
        String model = gd.getNextChoice();
        String modelFile = gd.getNextString();
        String channel = gd.getNextString().trim();
        double diameter = gd.getNextNumber();
        double cellprob = gd.getNextNumber();
        double flow = gd.getNextNumber();
        String device = gd.getNextChoice();
        int tile = (int) gd.getNextNumber();
        boolean recursive = gd.getNextBoolean();
        boolean overwrite = gd.getNextBoolean();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "input", input);
            Prefs.set(P + "output", output);
            Prefs.set(P + "model", model);
            Prefs.set(P + "model_file", modelFile);
            Prefs.set(P + "channel", channel);
            Prefs.set(P + "diameter", diameter);
            Prefs.set(P + "cellprob_threshold", cellprob);
            Prefs.set(P + "flow_threshold", flow);
            Prefs.set(P + "device", device);
            Prefs.set(P + "tile_size", tile);
        }
        try {
            List<String> args = arguments(input, output, Models.resolve(Engine.modelSpec(model, modelFile)), channel,
                    diameter, cellprob, flow, device, tile, recursive, overwrite);
            IJ.showStatus("cytoseg: segmenting " + input + " (details in the console)");
            int code = Native.runCli(args.toArray(new String[0]));
            String summary = new File(output, "summary.csv").getPath();
            if (code == 0) {
                IJ.log("cytoseg: Segment Folder done: " + summary);
            } else if (code == 1) {
                Engine.error("Some images failed; see " + summary + " for each image's error.");
            } else {
                Engine.error("Segment Folder could not run (exit status " + code
                        + "); the console shows the reason.");
            }
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * The {@code cytoseg segment} arguments for these settings.
     *
     * @return arguments without the program name
     */
    public static List<String> arguments(String input, String output, String model, String channel, double diameter,
            double cellprob, double flow, String device, int tile, boolean recursive, boolean overwrite) {
        if (input.isEmpty() || !new File(input).exists()) {
            throw new IllegalArgumentException("input: \"" + input + "\" is not a folder or file");
        }
        if (output.isEmpty()) {
            throw new IllegalArgumentException("output: choose an output folder");
        }
        List<String> a = new ArrayList<>();
        a.add("segment");
        a.add(input);
        a.add("--out");
        a.add(output);
        a.add("--model");
        a.add(model);
        a.add("--device");
        a.add(device);
        String ort = Cytoseg.ortLibrary();
        if (ort != null) {
            a.add("--ort-lib");
            a.add(ort);
        }
        if (!"mean".equals(channel) && !channel.isEmpty()) {
            int c;
            try {
                c = Integer.parseInt(channel);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("channel: \"" + channel + "\" is not mean or a channel number (1, 2, ...)");
            }
            a.add("--channel");
            a.add(Integer.toString(c - 1));
        }
        if (diameter > 0) {
            a.add("--diameter");
            a.add(Double.toString(diameter));
        }
        a.add("--cellprob-threshold");
        a.add(Double.toString(cellprob));
        a.add("--flow-threshold");
        a.add(Double.toString(flow));
        if (tile > 0) {
            a.add("--tile-size");
            a.add(Integer.toString(tile));
        }
        if (recursive) a.add("--recursive");
        if (overwrite) a.add("--overwrite");
        return a;
    }
}
