package org.cytoseg;

import java.lang.ref.Cleaner;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A loaded model. Thread-safe: several threads may segment with one model at once;
 * {@link #close()} waits for them and releases the native model once (a model that is never
 * closed is released when garbage-collected).
 */
public final class Model implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** The native handle and its lock, shared with the cleaner (which must not see Model). */
    private static final class State implements Runnable {
        final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
        long handle;

        State(long handle) {
            this.handle = handle;
        }

        @Override
        public void run() {
            lock.writeLock().lock();
            try {
                if (handle != 0) {
                    Native.modelFree(handle);
                    handle = 0;
                }
            } finally {
                lock.writeLock().unlock();
            }
        }
    }

    private final State state;
    private final Cleaner.Cleanable cleanable;
    private final Map<String, String> info;

    private Model(long handle) {
        state = new State(handle);
        cleanable = CLEANER.register(this, state);
        info = Native.parseKeyValues(Native.modelInfo(handle));
    }

    /**
     * Loads a model package.
     *
     * @param nameOrPath a bundled name ("nuclei", see {@link Models}) or a package folder
     * @param device auto, cpu, cuda, tensorrt, coreml or directml
     * @param threads ONNX Runtime threads, 0 = one per core
     * @return the model
     * @throws CytosegException when the package is missing or corrupt, or ONNX Runtime / the
     *     device is unavailable
     */
    public static Model load(String nameOrPath, String device, int threads) {
        String resolved = Models.resolve(nameOrPath);
        return new Model(Native.modelLoad(resolved, device, Cytoseg.ortLibrary(), threads));
    }

    /** @return the model description (name, version, diameter, device, onnxruntime_version...) */
    public Map<String, String> info() {
        return info;
    }

    /** @return the execution provider in use (cpu, cuda, ...) */
    public String device() {
        return info.getOrDefault("device", "");
    }

    /**
     * Segments one image.
     *
     * @param pixels byte[] (8-bit), short[] (16-bit, unsigned) or float[]; {@code height} rows of
     *     {@code width} pixels of {@code channels} interleaved samples
     * @param width image width
     * @param height image height
     * @param channels samples per pixel
     * @param options settings (null = the model's defaults)
     * @param labels output, width*height: 0 background, objects 1..n
     * @param listener progress and cancellation, or null
     * @return the number of objects n
     */
    public int segment(Object pixels, int width, int height, int channels, SegmentOptions options, int[] labels,
            ProgressListener listener) {
        return segment(pixels, width, height, channels, options, labels, null, listener);
    }

    /**
     * Segments one image and keeps the network's output (for {@link Qc#imageQc}).
     *
     * @param pixels as {@link #segment(Object, int, int, int, SegmentOptions, int[], ProgressListener)}
     * @param width image width
     * @param height image height
     * @param channels samples per pixel
     * @param options settings (null = the model's defaults)
     * @param labels output, width*height: 0 background, objects 1..n
     * @param flows null, or an output of 3*width*height floats: the dY, dX and cell-probability
     *     planes at image size
     * @param listener progress and cancellation, or null
     * @return the number of objects n
     */
    public int segment(Object pixels, int width, int height, int channels, SegmentOptions options, int[] labels,
            float[] flows, ProgressListener listener) {
        double[] p = (options == null ? new SegmentOptions() : options).toArray();
        state.lock.readLock().lock();
        try {
            long h = state.handle;
            if (h == 0) {
                throw new IllegalStateException("the model was closed");
            }
            if (pixels instanceof byte[]) {
                return Native.segmentBytes(h, (byte[]) pixels, width, height, channels, p, labels, flows, listener);
            } else if (pixels instanceof short[]) {
                return Native.segmentShorts(h, (short[]) pixels, width, height, channels, p, labels, flows, listener);
            } else if (pixels instanceof float[]) {
                return Native.segmentFloats(h, (float[]) pixels, width, height, channels, p, labels, flows, listener);
            }
            throw new IllegalArgumentException("pixels must be byte[], short[] or float[], not "
                    + (pixels == null ? "null" : pixels.getClass().getSimpleName()));
        } finally {
            state.lock.readLock().unlock();
        }
    }

    /** {@link #segmentVolume} mode: Cellpose's do_3D (the network on YX, ZY and ZX planes). */
    public static final int VOLUME_DO_3D = 0;
    /** {@link #segmentFolder}: z-stacks plane by plane (objects numbered per plane). */
    public static final int STACKS_PLANES = -1;
    /** {@link #segmentVolume} mode: Cellpose's stitching (2-D planes linked across z by IoU). */
    public static final int VOLUME_STITCH = 1;

    /**
     * Segments a z-stack into 3-D objects exactly as Cellpose 4's {@code do_3D} or stitching
     * mode (the stack normalized as one volume).
     *
     * @param pixels byte[], short[] (unsigned) or float[]: {@code planes} planes one after the
     *     other, each height rows of width pixels of channels interleaved samples
     * @param width plane width
     * @param height plane height
     * @param planes number of z planes (at least 2)
     * @param channels samples per pixel
     * @param options settings (null = the model's defaults; min_size counts voxels)
     * @param mode {@link #VOLUME_DO_3D} or {@link #VOLUME_STITCH}
     * @param modeValue the anisotropy (z spacing / pixel size; do_3D, 0 = 1) or the IoU
     *     threshold (stitching, e.g. 0.25)
     * @param labels output, planes*width*height: 0 background, objects 1..n
     * @param listener progress and cancellation (tiles of all planes), or null
     * @return the number of objects n
     */
    public int segmentVolume(Object pixels, int width, int height, int planes, int channels, SegmentOptions options,
            int mode, double modeValue, int[] labels, ProgressListener listener) {
        double[] p = (options == null ? new SegmentOptions() : options).toArray();
        state.lock.readLock().lock();
        try {
            long h = state.handle;
            if (h == 0) {
                throw new IllegalStateException("the model was closed");
            }
            if (pixels instanceof byte[]) {
                return Native.segmentVolumeBytes(h, (byte[]) pixels, width, height, planes, channels, p, mode,
                        modeValue, labels, null, listener);
            } else if (pixels instanceof short[]) {
                return Native.segmentVolumeShorts(h, (short[]) pixels, width, height, planes, channels, p, mode,
                        modeValue, labels, null, listener);
            } else if (pixels instanceof float[]) {
                return Native.segmentVolumeFloats(h, (float[]) pixels, width, height, planes, channels, p, mode,
                        modeValue, labels, null, listener);
            }
            throw new IllegalArgumentException("pixels must be byte[], short[] or float[], not "
                    + (pixels == null ? "null" : pixels.getClass().getSimpleName()));
        } finally {
            state.lock.readLock().unlock();
        }
    }

    /**
     * Segments files, folders and glob patterns into an output folder with the engine's batch
     * run, exactly as the {@code cytoseg segment} command: per image {@code <stem>_labels.tif}
     * and {@code <stem>_objects.csv}, per run {@code summary.csv} and {@code run.json}; images
     * finished by an earlier run with the same settings are skipped, so a cancelled or crashed
     * run resumes. An image that fails is reported and the others go on.
     *
     * @param inputs files, folders or glob patterns
     * @param out output folder (created if missing)
     * @param options settings (null = the model's defaults)
     * @param recursive also take images from sub-folders of folder inputs
     * @param overwrite redo finished images and replace outputs
     * @param jobs images at once (0 = automatic)
     * @param invocation what runs this, recorded in run.json (nullable)
     * @param listener progress and cancellation, called on this thread (nullable)
     * @return images {ok, skipped, failed, cancelled}
     */
    public long[] segmentFolder(String[] inputs, String out, SegmentOptions options, boolean recursive,
            boolean overwrite, int jobs, String invocation, BatchListener listener) {
        return segmentFolder(inputs, out, options, recursive, overwrite, jobs, STACKS_PLANES, 0, invocation, listener);
    }

    /**
     * {@link #segmentFolder(String[], String, SegmentOptions, boolean, boolean, int, String, BatchListener)}
     * choosing how z-stacks become objects, as {@code cytoseg segment --do-3d} or
     * {@code --stitch-threshold}: 3-D label stacks and objects tables (2-D images then fail).
     *
     * @param inputs files, folders or glob patterns
     * @param out output folder (created if missing)
     * @param options settings (null = the model's defaults)
     * @param recursive also take images from sub-folders of folder inputs
     * @param overwrite redo finished images and replace outputs
     * @param jobs images at once (0 = automatic)
     * @param stackMode {@link #STACKS_PLANES}, {@link #VOLUME_DO_3D} or {@link #VOLUME_STITCH}
     * @param stackValue the anisotropy for {@link #VOLUME_DO_3D} (0 = each file's z spacing, else
     *     1) or the IoU threshold for {@link #VOLUME_STITCH}
     * @param invocation what runs this, recorded in run.json (nullable)
     * @param listener progress and cancellation, called on this thread (nullable)
     * @return images {ok, skipped, failed, cancelled}
     */
    public long[] segmentFolder(String[] inputs, String out, SegmentOptions options, boolean recursive,
            boolean overwrite, int jobs, int stackMode, double stackValue, String invocation,
            BatchListener listener) {
        double[] p = (options == null ? new SegmentOptions() : options).toArray();
        state.lock.readLock().lock();
        try {
            long h = state.handle;
            if (h == 0) {
                throw new IllegalStateException("the model was closed");
            }
            return Native.segmentFolder(h, inputs, out, p, recursive, overwrite, jobs, stackMode, stackValue,
                    invocation, listener);
        } finally {
            state.lock.readLock().unlock();
        }
    }

    /**
     * Releases the native model (waits for running segmentations); later calls do nothing.
     *
     * @throws IllegalStateException when called from inside {@link #segment} on this model (a
     *     progress listener), which would wait for itself; return false from the listener to
     *     cancel instead
     */
    @Override
    public void close() {
        if (state.lock.getReadHoldCount() > 0) {
            throw new IllegalStateException("Model.close() was called from inside segment() on the same model"
                    + " (a progress listener); return false from the listener to cancel instead");
        }
        cleanable.clean();
    }
}
