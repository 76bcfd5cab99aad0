package org.cytoseg;

/**
 * How the QC report groups images (the options of {@code cytoseg qc}); null or empty fields take
 * the engine's defaults. Crosses to the engine as one JSON object ({@link #toJson()}), which the
 * engine reads and checks (unknown fields, bad thresholds and missing group fields are errors
 * naming the problem).
 */
public final class QcOptions {
    /**
     * Path pattern with named fields matched against the end of each input path, e.g.
     * {@code {instrument}/{date}/*.tif} or {@code {plate}_{well}_s{site}.tif}.
     */
    public String pattern;
    /** CSV giving each image's fields: a {@code file} column, then one column per field. */
    public String sidecar;
    /**
     * Fields whose values form the groups compared, comma-separated (empty: every field except
     * well, row, column, site, field and channel).
     */
    public String groupBy;
    /** Plate map CSV (well, treatment, optional control): treatments against groups. */
    public String plateMap;

    /** @return the options as the JSON object the engine reads (null fields left out) */
    public String toJson() {
        StringBuilder b = new StringBuilder("{");
        field(b, "pattern", pattern);
        field(b, "sidecar", sidecar);
        field(b, "group_by", groupBy);
        field(b, "plate_map", plateMap);
        return b.append('}').toString();
    }

    private static void field(StringBuilder b, String key, String value) {
        if (value == null) {
            return;
        }
        if (b.length() > 1) {
            b.append(", ");
        }
        b.append('"').append(key).append("\": ");
        quote(b, value);
    }

    /** Appends {@code s} as a JSON string literal. */
    static void quote(StringBuilder b, String s) {
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        b.append('"');
    }
}
