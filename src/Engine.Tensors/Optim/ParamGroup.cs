namespace Engine.Tensors.Optim;

/// <summary>
/// A set of parameters that share a learning rate and weight decay (torch's <c>param_groups</c> entry).
/// Options left null take the optimizer's defaults when the group is given to an optimizer.
/// Schedulers change <see cref="LearningRate"/>; <see cref="InitialLearningRate"/> is the base they
/// scale (set by the first scheduler attached, as torch's <c>initial_lr</c>).
/// </summary>
public sealed class ParamGroup
{
    /// <summary>A group over <paramref name="parameters"/> with optional per-group options.</summary>
    /// <param name="parameters">Leaf floating-point tensors to optimize.</param>
    /// <param name="learningRate">This group's learning rate (null: the optimizer's).</param>
    /// <param name="weightDecay">This group's weight decay (null: the optimizer's).</param>
    public ParamGroup(IEnumerable<Tensor> parameters, double? learningRate = null, double? weightDecay = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Parameters = parameters.ToArray();
        RequestedLearningRate = learningRate;
        RequestedWeightDecay = weightDecay;
    }

    /// <summary>The group's parameters, in order.</summary>
    public IReadOnlyList<Tensor> Parameters { get; }

    /// <summary>The learning rate used by the next <see cref="Optimizer.Step"/>.</summary>
    public double LearningRate { get; set; }

    /// <summary>Weight decay (L2 penalty for SGD/Adam, decoupled decay for AdamW).</summary>
    public double WeightDecay { get; set; }

    /// <summary>The learning rate schedulers scale from; null until a scheduler is attached.</summary>
    public double? InitialLearningRate { get; set; }

    internal double? RequestedLearningRate { get; }
    internal double? RequestedWeightDecay { get; }
}
