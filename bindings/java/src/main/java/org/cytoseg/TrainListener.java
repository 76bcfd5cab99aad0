package org.cytoseg;

/**
 * Progress of {@link Native#train}: called on the thread that called it after every training
 * step.
 */
@FunctionalInterface
public interface TrainListener {
    /**
     * @param step steps done
     * @param steps steps planned
     * @param loss mean training loss of the last steps
     * @param valLoss latest validation loss, NaN when there is none yet
     * @param learningRate current learning rate
     * @param elapsedS seconds since the run (or its resumption) started
     * @param etaS estimated seconds left
     * @return true to go on, false to cancel (a checkpoint is saved in the output folder; train
     *     again with resume true to continue)
     */
    boolean step(long step, long steps, double loss, double valLoss, double learningRate,
            double elapsedS, double etaS);
}
