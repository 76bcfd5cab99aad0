package org.cytoseg;

/** A measurement table: named columns of doubles, one row per object (ordered by label). */
public final class Table {
    private final String[] names;
    private final String[] units;
    private final double[] values;
    private final int rows;

    /**
     * Creates a table (called by the native library).
     *
     * @param names column names
     * @param units column units ("" when none)
     * @param values column-major values, rows per column
     * @param rows number of rows
     */
    public Table(String[] names, String[] units, double[] values, int rows) {
        if (names.length != units.length || (long) names.length * rows != values.length) {
            throw new IllegalArgumentException("inconsistent table");
        }
        this.names = names;
        this.units = units;
        this.values = values;
        this.rows = rows;
    }

    /** @return number of rows */
    public int rows() {
        return rows;
    }

    /** @return number of columns */
    public int columns() {
        return names.length;
    }

    /** @param c column index @return its name */
    public String name(int c) {
        return names[c];
    }

    /** @param c column index @return its unit, "" when none */
    public String unit(int c) {
        return units[c];
    }

    /**
     * @param c column index
     * @param r row index
     * @return the value
     */
    public double get(int c, int r) {
        return values[c * rows + r];
    }

    /** @param name column name @return its index or -1 */
    public int indexOf(String name) {
        for (int i = 0; i < names.length; i++) {
            if (names[i].equals(name)) {
                return i;
            }
        }
        return -1;
    }
}
