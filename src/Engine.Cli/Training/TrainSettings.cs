namespace Engine.Cli.Training;

/// <summary>Which Fashion-MNIST network (the Teacher and Student of <c>../shared/peers/torch_bench.py</c>).</summary>
public enum ModelKind
{
    /// <summary>The 1.7M-parameter CNN with batch norm and dropout.</summary>
    Teacher,
    /// <summary>The 9k-parameter CNN.</summary>
    Student,
}

/// <summary>
/// The settings shared by <c>train</c>, <c>distill</c> and <c>main-job</c>. Defaults (documented in the
/// README): SGD with momentum 0.9, learning rate 0.05 reached by a linear warmup over the first epoch
/// (at most a fifth of the steps) and then annealed per step by a cosine schedule to 0,
/// weight decay 5e-4, batch 128; the teacher trains on random 28×28 crops of the images padded by 2
/// (no flip unless asked).
/// </summary>
public sealed record TrainSettings
{
    /// <summary>Epochs (passes over the training images).</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Peak learning rate (the cosine schedule starts here).</summary>
    public double LearningRate { get; init; } = 0.05;

    /// <summary>
    /// Epochs of linear learning-rate warmup (from 0.1× the peak) before the cosine decay; capped at a
    /// fifth of the run. 0: no warmup.
    /// </summary>
    public double WarmupEpochs { get; init; } = 1;

    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>L2 weight decay (added to the gradient, as torch's SGD).</summary>
    public double WeightDecay { get; init; } = 5e-4;

    /// <summary>Seeds the initialization, the dropout masks, the shuffling and the augmentation.</summary>
    public ulong Seed { get; init; }

    /// <summary>Threads for the CPU ops; null: leave <see cref="Engine.Tensors.Cpu.Parallelism.MaxThreads"/> as it is.</summary>
    public int? Threads { get; init; }

    /// <summary>The device (only "cpu" trains today).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Directory of the Fashion-MNIST IDX files; null: <see cref="Engine.Data.FashionMnist.DefaultDirectory"/>.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Train on the first N training images only (quick runs); null: all.</summary>
    public int? Limit { get; init; }

    /// <summary>Evaluate on the first N test images only (quick runs); null: all 10000.</summary>
    public int? TestLimit { get; init; }

    /// <summary>Random crop 28×28 from images padded by 2; null: on for the teacher, off for students.</summary>
    public bool? Augment { get; init; }

    /// <summary>Random horizontal flip (p = 0.5) in addition to the crop.</summary>
    public bool Flip { get; init; }

    /// <summary>Where to write the checkpoint; null: none.</summary>
    public string? Out { get; init; }

    /// <summary>JSON-lines file to append one record per epoch to; null: none.</summary>
    public string? Metrics { get; init; }

    /// <summary>Whether the augmentation is on for <paramref name="kind"/>.</summary>
    public bool AugmentFor(ModelKind kind) => Augment ?? kind == ModelKind.Teacher;
}

/// <summary>The KD settings of <c>distill</c>.</summary>
/// <param name="Temperature">Softmax temperature T of the soft targets.</param>
/// <param name="Alpha">Weight of the KD term (1 − α weighs the cross-entropy).</param>
public sealed record DistillSettings(double Temperature = 4.0, double Alpha = 0.9);
