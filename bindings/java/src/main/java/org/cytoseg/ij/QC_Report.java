package org.cytoseg.ij;

import ij.IJ;
import ij.Macro;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import java.io.File;
import java.util.Map;
import org.cytoseg.CytosegException;
import org.cytoseg.Qc;
import org.cytoseg.QcOptions;

/**
 * Plugins &gt; cytoseg &gt; QC Report...: the quality-control report of a segmentation output
 * folder (Segment Folder's, or {@code cytoseg segment}'s), as {@code cytoseg qc}: images that
 * should not be trusted (out of focus, saturated, dim, empty, an unsure network), drift between
 * acquisition groups, treatments confounded with groups. Writes {@code folder/qc/qc_report.html}
 * (+ CSV tables) with the engine, in-process, and opens the page in the browser. Macro:
 * {@code run("QC Report...", "folder=/data/out pattern=[{instrument}/{date}/*.tif] sidecar=
 * group_by= plate_map= open_report");}
 */
public class QC_Report implements PlugIn {
    private static final String P = "cytoseg.qc.";

    /** The dialog's settings. */
    public static final class Settings {
        /** The segmentation output folder (holding summary.csv). */
        public String folder = "";
        /** Grouping: pattern, sidecar, group-by fields, plate map (empty = not given). */
        public QcOptions options = new QcOptions();
        /** Open the page in the browser when done. */
        public boolean open = true;
    }

    @Override
    public void run(String arg) {
        GenericDialog gd = new GenericDialog("cytoseg: QC Report");
        gd.addStringField("folder", Prefs.get(P + "folder", Prefs.get("cytoseg.folder.output", "")), 40);
        gd.addMessage("Groups (all optional): fields from the paths or a sidecar CSV, e.g. {instrument}/{date}/*.tif");
        gd.addStringField("pattern", Prefs.get(P + "pattern", ""), 40);
        gd.addStringField("sidecar", Prefs.get(P + "sidecar", ""), 40);
        gd.addStringField("group_by", Prefs.get(P + "group_by", ""), 20);
        gd.addStringField("plate_map", Prefs.get(P + "plate_map", ""), 40);
        gd.addCheckbox("open_report", true);
        gd.addHelp("https://github.com/cytoseg/cytoseg/blob/main/docs/qc.md");
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        Settings s = new Settings();
        s.folder = gd.getNextString().trim();
        s.options.pattern = gd.getNextString().trim();
        s.options.sidecar = gd.getNextString().trim();
        s.options.groupBy = gd.getNextString().trim();
        s.options.plateMap = gd.getNextString().trim();
        s.open = gd.getNextBoolean();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "folder", s.folder);
            Prefs.set(P + "pattern", s.options.pattern);
            Prefs.set(P + "sidecar", s.options.sidecar);
            Prefs.set(P + "group_by", s.options.groupBy);
            Prefs.set(P + "plate_map", s.options.plateMap);
        }
        try {
            IJ.showStatus("cytoseg: writing the QC report");
            Map<String, String> verdict = run(s);
            Engine.showQcReport(verdict, s.open);
            IJ.showStatus("cytoseg: QC report written");
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * Writes the report of these settings with the engine (in-process, no command line).
     *
     * @param s settings
     * @return html (the page's path), images, groups, flagged, drifting, confounded
     * @throws CytosegException as {@link Qc#report}
     */
    public static Map<String, String> run(Settings s) {
        if (s.folder.isEmpty()) {
            throw new IllegalArgumentException("folder: choose the output folder of a segmentation run"
                    + " (Segment Folder's output, holding summary.csv)");
        }
        if (!new File(s.folder).isDirectory()) {
            throw new IllegalArgumentException("folder: " + s.folder + " is not a folder");
        }
        return Qc.report(s.folder, s.options);
    }
}
