package org.cytoseg.ij;

import ij.IJ;
import ij.plugin.PlugIn;
import java.util.Map;
import org.cytoseg.Cytoseg;
import org.cytoseg.CytosegException;
import org.cytoseg.Model;
import org.cytoseg.Models;
import org.cytoseg.Native;
import org.cytoseg.NativeLoader;

/**
 * Plugins &gt; cytoseg &gt; About cytoseg: versions, models (bundled and the user's own) and ONNX
 * Runtime providers, in the Log.
 */
public class About_Cytoseg implements PlugIn {
    @Override
    public void run(String arg) {
        try {
            IJ.log(report());
        } catch (CytosegException | UnsatisfiedLinkError e) {
            Engine.error(e.getMessage());
        }
    }

    /** @return the report text */
    public static String report() {
        StringBuilder sb = new StringBuilder();
        sb.append("cytoseg engine ").append(Cytoseg.version()).append(" (").append(NativeLoader.platform())
                .append(", loaded from ").append(NativeLoader.source()).append(")\n");
        Map<String, String> rt = Cytoseg.runtime();
        sb.append("ONNX Runtime ").append(rt.get("version")).append(" (").append(rt.get("library")).append(")\n");
        sb.append("execution providers:");
        for (Map.Entry<String, String> e : rt.entrySet()) {
            if (e.getKey().startsWith("provider.")) {
                sb.append(' ').append(e.getKey().substring(9)).append("true".equals(e.getValue()) ? "" : " (not available)")
                        .append(',');
            }
        }
        sb.setLength(sb.length() - 1);
        sb.append('\n');
        for (String name : Models.bundled()) {
            try {
                Model m = Engine.load(name, "cpu");
                Map<String, String> i = m.info();
                sb.append("model ").append(name).append(' ').append(i.get("version")).append(", diameter ")
                        .append(i.get("diameter")).append(" px, sha256 ").append(i.get("sha256"), 0, 12).append("…\n");
            } catch (CytosegException e) {
                sb.append("model ").append(name).append(": ").append(Engine.firstLine(e.getMessage())).append('\n');
            }
        }
        // The user's own models (Train Model, napari, cytoseg train --name), found by name.
        String root;
        try {
            root = new java.io.File(Native.userModelDir("")).getAbsolutePath();
        } catch (CytosegException e) {
            root = null;
            sb.append("your models: ").append(Engine.firstLine(e.getMessage())).append('\n');
        }
        if (root != null) {
            StringBuilder mine = new StringBuilder();
            for (Map.Entry<String, String> e : Native.parseKeyValues(Native.listModels()).entrySet()) {
                if (new java.io.File(e.getValue()).getAbsolutePath().startsWith(root + java.io.File.separator)) {
                    mine.append(mine.length() == 0 ? "" : ", ").append(e.getKey());
                }
            }
            sb.append("your models (Train Model; ").append(root).append("): ")
                    .append(mine.length() == 0 ? "none yet" : mine).append('\n');
        }
        sb.append("commands: Plugins > cytoseg > Segment Image, Segment Folder, Train Model, Evaluate Labels");
        return sb.toString().trim();
    }
}
