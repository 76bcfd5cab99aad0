package org.cytoseg;

/** Receives segmentation progress between batches of tiles; can cancel. */
@FunctionalInterface
public interface ProgressListener {
    /**
     * Called on the segmenting thread after each batch of tiles.
     *
     * @param done tiles finished
     * @param total tiles in all
     * @return true to go on, false to cancel (the call then throws a cancelled
     *     {@link CytosegException})
     */
    boolean progress(int done, int total);
}
