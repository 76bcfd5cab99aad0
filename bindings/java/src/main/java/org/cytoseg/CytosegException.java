package org.cytoseg;

/**
 * An error reported by the cytoseg engine, with the engine's message and the status number of
 * the C API ({@code cytoseg_status}: 101 invalid argument, 102 shape mismatch, 103 non-finite
 * input, 104 too large, 200 model, 201 runtime, 300 I/O, 301 file format, 400 cancelled).
 */
public class CytosegException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** Status number of an invalid argument. */
    public static final int INVALID = 101;
    /** Status number of a cancelled operation. */
    public static final int CANCELLED = 400;
    /** Status number of a missing or corrupt model package. */
    public static final int MODEL = 200;
    /** Status number of an unavailable or failing ONNX Runtime / device. */
    public static final int RUNTIME = 201;

    private final int status;

    /**
     * Creates the exception (called by the native library).
     *
     * @param status the C API status number
     * @param message the engine's message
     */
    public CytosegException(int status, String message) {
        super(message);
        this.status = status;
    }

    /** @return the C API status number */
    public int status() {
        return status;
    }

    /** @return whether the operation was cancelled (by a progress listener) */
    public boolean isCancelled() {
        return status == CANCELLED;
    }
}
