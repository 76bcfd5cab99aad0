package org.cytoseg;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The per-object classifier (docs/classify.md) on images held in memory: train on picked
 * objects, describe a model file, classify the objects of a label image. The features are those
 * of {@code cytoseg segment}'s objects tables, so models are interchangeable with
 * {@code cytoseg classify train|apply} on output folders, napari and Python.
 */
public final class Classifier {
    private Classifier() {}

    /** A model's description: classes, validation, training counts. */
    public static final class Info {
        /** Class names; a class index is a position here. */
        public final List<String> classes;
        /** Labelled objects per class. */
        public final long[] objectsPerClass;
        /** Cross-validated confusion matrix, {@code confusion[true][predicted]}. */
        public final long[][] confusion;
        /** Cross-validated accuracy. */
        public final double cvAccuracy;
        /** Out-of-bag accuracy of the final forest. */
        public final double oobAccuracy;
        /** Cross-validation folds. */
        public final int folds;
        /** Number of features. */
        public final int features;

        Info(Map<String, String> kv) {
            int k = Integer.parseInt(kv.get("classes"));
            List<String> names = new ArrayList<>();
            objectsPerClass = new long[k];
            confusion = new long[k][k];
            for (int i = 0; i < k; i++) {
                names.add(kv.get("class." + i));
                objectsPerClass[i] = Long.parseLong(kv.get("objects." + i));
                String[] row = kv.get("confusion." + i).trim().split(" ");
                for (int j = 0; j < k; j++) {
                    confusion[i][j] = Long.parseLong(row[j]);
                }
            }
            classes = Collections.unmodifiableList(names);
            cvAccuracy = Double.parseDouble(kv.get("cv_accuracy"));
            oobAccuracy = Double.parseDouble(kv.get("oob_accuracy"));
            folds = Integer.parseInt(kv.get("folds"));
            features = Integer.parseInt(kv.get("features"));
        }
    }

    /** The classes of the objects of one label image. */
    public static final class Result {
        /** Object labels, in label order. */
        public final int[] labels;
        /** Each object's class index into {@link #classes}, -1 when unclassified (a feature is not finite). */
        public final int[] classIndex;
        /** The probability of that class (NaN when unclassified). */
        public final double[] probability;
        /** The model's class names. */
        public final List<String> classes;

        Result(Table t, List<String> classes) {
            int n = t.rows();
            labels = new int[n];
            classIndex = new int[n];
            probability = new double[n];
            int l = t.indexOf("label"), c = t.indexOf("class_index"), p = t.indexOf("class_probability");
            for (int r = 0; r < n; r++) {
                labels[r] = (int) (long) t.get(l, r);
                classIndex[r] = (int) t.get(c, r);
                probability[r] = t.get(p, r);
            }
            this.classes = classes;
        }

        /**
         * @param row an object's row
         * @return its class name, "" when unclassified
         */
        public String className(int row) {
            return classIndex[row] < 0 ? "" : classes.get(classIndex[row]);
        }
    }

    /**
     * Trains on objects picked in one image and writes the model file (see
     * {@link Native#classifierTrain}).
     *
     * @param image byte[] (8-bit), short[] (16-bit, unsigned) or float[], width*height*channels
     *     interleaved
     * @param channels samples per pixel
     * @param labels width*height labels, 0 = background
     * @param width image width
     * @param height image height
     * @param pickLabels the picked objects' labels (never 0)
     * @param pickClasses their classes; two classes or more, each picked twice or more
     * @param name the image's name
     * @param pixelWidth pixel width in unit (1 when uncalibrated)
     * @param pixelHeight pixel height in unit
     * @param unit length unit, "pixel" when uncalibrated
     * @param trees trees, 0 = 200
     * @param seed random seed
     * @param folds cross-validation folds, 0 = 5
     * @param modelOut the model file to write (JSON)
     * @return the model's description
     * @throws CytosegException when a pick lies on the background or on no object (naming the
     *     pick, 0-based), only one class is picked, the file cannot be written
     */
    public static Info train(Object image, int channels, int[] labels, int width, int height, int[] pickLabels,
            String[] pickClasses, String name, double pixelWidth, double pixelHeight, String unit, int trees,
            long seed, int folds, String modelOut) {
        return new Info(Native.parseKeyValues(Native.classifierTrain(image, channels, labels, width, height,
                pickLabels, pickClasses, name, pixelWidth, pixelHeight, unit, trees, seed, folds, modelOut)));
    }

    /**
     * @param model a model file
     * @return its description
     * @throws CytosegException when the file is missing, damaged or of another format version
     */
    public static Info info(String model) {
        return new Info(Native.parseKeyValues(Native.classifierInfo(model)));
    }

    /**
     * Classifies every object of a label image.
     *
     * @param model the model file
     * @param image byte[], short[] or float[], width*height*channels interleaved, with the
     *     training images' channels
     * @param channels samples per pixel
     * @param labels width*height labels
     * @param width image width
     * @param height image height
     * @param pixelWidth pixel width in unit
     * @param pixelHeight pixel height in unit
     * @param unit length unit ("pixel" when uncalibrated); must give the model's feature units
     * @return the class of every object
     * @throws CytosegException when the image lacks a feature of the model (another calibration
     *     or channel count), or the model file is unusable
     */
    public static Result classify(String model, Object image, int channels, int[] labels, int width, int height,
            double pixelWidth, double pixelHeight, String unit) {
        List<String> classes = info(model).classes;
        Table t = Native.classifyLabels(model, image, channels, labels, width, height, pixelWidth, pixelHeight, unit);
        return new Result(t, classes);
    }
}
