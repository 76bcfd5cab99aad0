package org.cytoseg;

/**
 * Progress of {@link Model#segmentFolder}: called on the thread that called it (the work runs on
 * engine threads), once before any image starts (so that cancelling at the first call cancels
 * every image), after each image and about every 100 ms in between.
 */
@FunctionalInterface
public interface BatchListener {
    /**
     * @param done images finished so far
     * @param total images in the run
     * @param line the finished image's one-line report ({@code [k/n] ok FILE: N object(s) ...},
     *     {@code [k/n] FAILED FILE: error}), or null for a periodic call between images
     * @return true to go on, false to cancel (images in progress stop at their next tile batch;
     *     running again with the same settings finishes the rest)
     */
    boolean image(int done, int total, String line);
}
