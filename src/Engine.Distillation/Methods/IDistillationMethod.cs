using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// A distillation method: how a student (and whatever else the method trains) learns from a batch.
/// <para>
/// The trainer (<see cref="MethodTrainer"/>) calls, for each batch of each epoch, <see cref="Loss"/>
/// once per entry of <see cref="UpdateGroups"/>, in order, and after each call runs backward and one
/// optimizer step over that group's parameters. Almost every method has one group (the student's
/// parameters plus its extra trainable modules, e.g. a FitNets regressor); mutual learning has one
/// group per peer and recomputes the peers' predictions before each peer's update (DML, Algorithm 1).
/// </para>
/// <para>
/// Ownership: the method disposes what it created (regressors, extra peers, per-sample state); the
/// caller owns the student and the teachers it passed in.
/// </para>
/// </summary>
public interface IDistillationMethod : IDisposable
{
    /// <summary>The registry name ("kd", "fitnets", ...).</summary>
    string Name { get; }

    /// <summary>The model whose accuracy is reported and saved.</summary>
    Module Student { get; }

    /// <summary>Frozen models the method learns from (kept in eval mode, no gradients); empty for self- and online methods.</summary>
    IReadOnlyList<Module> Teachers { get; }

    /// <summary>Trainable modules besides the student (FitNets regressor, DML peers); put in training mode with it.</summary>
    IReadOnlyList<Module> ExtraModules { get; }

    /// <summary>
    /// The parameters each update of a step trains, in update order; an optimizer is built per group.
    /// Usually one group: the student's parameters and those of <see cref="ExtraModules"/>.
    /// </summary>
    IReadOnlyList<IReadOnlyList<Tensor>> UpdateGroups { get; }

    /// <summary>
    /// True when the method needs nothing of the teacher but its logits on the (unaugmented) batch, so the
    /// trainer may compute them once per data set and pass them in <see cref="DistillationBatch.TeacherLogits"/>.
    /// </summary>
    bool UsesTeacherLogitsOnly { get; }

    /// <summary>Called once before training: the data set's size and the step counts (per-sample state is sized here).</summary>
    void BeginTraining(TrainingPlan plan);

    /// <summary>Called at the start of epoch <paramref name="epoch"/> (0-based), after the modules are put in training mode.</summary>
    void BeginEpoch(int epoch);

    /// <summary>Called after the last step of epoch <paramref name="epoch"/>, before evaluation.</summary>
    void EndEpoch(int epoch);

    /// <summary>
    /// The scalar loss of update <paramref name="update"/> (index into <see cref="UpdateGroups"/>) on
    /// <paramref name="batch"/>, connected to the graph of that group's parameters, and the logits of
    /// the model that update trains (for the training accuracy; update 0's are the student's).
    /// </summary>
    MethodLoss Loss(DistillationBatch batch, int update);
}

/// <summary>A loss and the logits it was computed from.</summary>
/// <param name="Value">The scalar loss (0-d), differentiable wrt the update's parameters.</param>
/// <param name="Logits">The logits [B, C] of the model trained by this update (used for accuracy only).</param>
public readonly record struct MethodLoss(Tensor Value, Tensor Logits);

/// <summary>The sizes of a training run, given to <see cref="IDistillationMethod.BeginTraining"/>.</summary>
/// <param name="DatasetSize">Number of training samples (sample indices are 0 .. DatasetSize − 1).</param>
/// <param name="Classes">Number of classes.</param>
/// <param name="Epochs">Number of epochs.</param>
/// <param name="StepsPerEpoch">Batches per epoch.</param>
/// <param name="FixedInputs">True when every epoch shows each sample unchanged (no augmentation), so a frozen
/// teacher's outputs on a sample never change and may be cached by sample index.</param>
public sealed record TrainingPlan(int DatasetSize, int Classes, int Epochs, int StepsPerEpoch, bool FixedInputs = false)
{
    /// <summary>Epochs × steps per epoch.</summary>
    public long TotalSteps => (long)Epochs * StepsPerEpoch;
}

/// <summary>One training batch as a method sees it.</summary>
/// <param name="Images">Inputs [B, ...], already transformed (normalized, augmented).</param>
/// <param name="Labels">Class indices, int64 [B].</param>
/// <param name="Indices">The samples' indices in the training set (for per-sample state such as PS-KD's past predictions).</param>
/// <param name="Epoch">0-based epoch.</param>
/// <param name="Step">0-based batch index within the epoch.</param>
/// <param name="GlobalStep">0-based step over the whole run.</param>
/// <param name="TeacherLogits">Precomputed logits of <see cref="IDistillationMethod.Teachers"/> on these images (one per teacher), when the trainer cached them; null otherwise.</param>
public sealed record DistillationBatch(Tensor Images, Tensor Labels, long[] Indices, int Epoch, int Step, long GlobalStep,
    IReadOnlyList<Tensor>? TeacherLogits = null);
