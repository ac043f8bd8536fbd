namespace Engine.Tensors.Optim;

/// <summary>
/// Base of the learning-rate schedules, as torch.optim.lr_scheduler. Constructing a scheduler records
/// each group's base rate (<see cref="ParamGroup.InitialLearningRate"/>, set from the group's current
/// rate by the first scheduler attached) and sets the rate for epoch 0; each <see cref="Step"/> then
/// advances <see cref="LastEpoch"/> by one and sets every group's rate to the schedule's value there.
/// Call <see cref="Step"/> once per epoch or once per iteration (after <see cref="Optimizer.Step"/>),
/// whichever unit the schedule's lengths are counted in.
/// <para>
/// Rates are computed from the closed form of each schedule (torch's <c>_get_closed_form_lr</c>), in
/// float64, so no rounding accumulates over steps.
/// </para>
/// </summary>
public abstract class LRScheduler
{
    private readonly double[] _baseLrs;

    /// <summary>Attaches the schedule to <paramref name="optimizer"/> and sets the epoch-0 rates.</summary>
    protected LRScheduler(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        Optimizer = optimizer;
        foreach (var g in optimizer.ParamGroups) g.InitialLearningRate ??= g.LearningRate;
        _baseLrs = optimizer.ParamGroups.Select(g => g.InitialLearningRate!.Value).ToArray();
    }

    /// <summary>The optimizer whose groups' rates this schedule sets.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>The epoch (or iteration) whose rate is in force; 0 after construction.</summary>
    public long LastEpoch { get; private set; }

    /// <summary>Each group's base rate.</summary>
    public IReadOnlyList<double> BaseLearningRates => _baseLrs;

    /// <summary>The rates set by the last step (or by the constructor), one per group.</summary>
    public double[] GetLastLr() => Optimizer.ParamGroups.Select(g => g.LearningRate).ToArray();

    /// <summary>The schedule: the rate at <paramref name="epoch"/> for a group of base rate <paramref name="baseLr"/>.</summary>
    public abstract double LearningRateAt(double baseLr, long epoch);

    /// <summary>Advances one epoch (or iteration) and sets the groups' rates.</summary>
    public void Step()
    {
        LastEpoch++;
        Apply();
    }

    /// <summary>Sets the groups' rates for <see cref="LastEpoch"/>; derived constructors call it once.</summary>
    protected void Apply()
    {
        for (int g = 0; g < _baseLrs.Length; g++) Optimizer.ParamGroups[g].LearningRate = LearningRateAt(_baseLrs[g], LastEpoch);
    }

    /// <summary>Linear warmup from <paramref name="warmupStartFactor"/> × base over <paramref name="warmupSteps"/>
    /// steps, then cosine annealing to <paramref name="etaMin"/> over the remaining
    /// <paramref name="totalSteps"/> − <paramref name="warmupSteps"/> steps: a <see cref="SequentialLR"/> of a
    /// <see cref="LinearLR"/> and a <see cref="CosineAnnealingLR"/>.</summary>
    public static SequentialLR WarmupCosine(Optimizer optimizer, long warmupSteps, long totalSteps, double warmupStartFactor = 1.0 / 3, double etaMin = 0)
    {
        if (warmupSteps <= 0 || totalSteps <= warmupSteps)
            throw new ArgumentOutOfRangeException(nameof(warmupSteps), $"WarmupCosine: need 0 < warmupSteps < totalSteps; got warmupSteps {warmupSteps}, totalSteps {totalSteps}.");
        var warmup = new LinearLR(optimizer, warmupStartFactor, 1.0, warmupSteps);
        var cosine = new CosineAnnealingLR(optimizer, totalSteps - warmupSteps, etaMin);
        return new SequentialLR(optimizer, [warmup, cosine], [warmupSteps]);
    }
}

/// <summary>torch StepLR: base · gamma^⌊epoch / stepSize⌋.</summary>
public sealed class StepLR : LRScheduler
{
    /// <summary>Decays the rate by <paramref name="gamma"/> every <paramref name="stepSize"/> steps.</summary>
    public StepLR(Optimizer optimizer, long stepSize, double gamma = 0.1) : base(optimizer)
    {
        if (stepSize <= 0) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "StepLR: stepSize must be positive.");
        StepSize = stepSize;
        Gamma = gamma;
        Apply();
    }

    /// <summary>Steps between decays.</summary>
    public long StepSize { get; }

    /// <summary>Decay factor.</summary>
    public double Gamma { get; }

    /// <inheritdoc/>
    public override double LearningRateAt(double baseLr, long epoch) => baseLr * Math.Pow(Gamma, epoch / StepSize);
}

/// <summary>
/// torch CosineAnnealingLR (closed form): etaMin + (base − etaMin) · (1 + cos(π · epoch / tMax)) / 2.
/// Past tMax the cosine continues (the rate rises again), as torch's closed form.
/// </summary>
public sealed class CosineAnnealingLR : LRScheduler
{
    /// <summary>Anneals from the base rate to <paramref name="etaMin"/> over <paramref name="tMax"/> steps.</summary>
    public CosineAnnealingLR(Optimizer optimizer, long tMax, double etaMin = 0) : base(optimizer)
    {
        if (tMax <= 0) throw new ArgumentOutOfRangeException(nameof(tMax), tMax, "CosineAnnealingLR: tMax must be positive.");
        TMax = tMax;
        EtaMin = etaMin;
        Apply();
    }

    /// <summary>Steps of the half cosine.</summary>
    public long TMax { get; }

    /// <summary>The rate reached at tMax.</summary>
    public double EtaMin { get; }

    /// <inheritdoc/>
    public override double LearningRateAt(double baseLr, long epoch) => EtaMin + (baseLr - EtaMin) * (1 + Math.Cos(Math.PI * epoch / TMax)) / 2;
}

/// <summary>
/// torch LinearLR (linear warmup): base · (startFactor + (endFactor − startFactor) · min(epoch, totalIters) / totalIters).
/// </summary>
public sealed class LinearLR : LRScheduler
{
    /// <summary>Scales the rate linearly from <paramref name="startFactor"/> to <paramref name="endFactor"/> over <paramref name="totalIters"/> steps.</summary>
    public LinearLR(Optimizer optimizer, double startFactor = 1.0 / 3, double endFactor = 1.0, long totalIters = 5) : base(optimizer)
    {
        if (!(startFactor > 0 && startFactor <= 1))
            throw new ArgumentOutOfRangeException(nameof(startFactor), startFactor, "LinearLR: startFactor must be in (0, 1].");
        if (!(endFactor >= 0 && endFactor <= 1))
            throw new ArgumentOutOfRangeException(nameof(endFactor), endFactor, "LinearLR: endFactor must be in [0, 1].");
        if (totalIters <= 0) throw new ArgumentOutOfRangeException(nameof(totalIters), totalIters, "LinearLR: totalIters must be positive.");
        StartFactor = startFactor;
        EndFactor = endFactor;
        TotalIters = totalIters;
        Apply();
    }

    /// <summary>Factor at step 0.</summary>
    public double StartFactor { get; }

    /// <summary>Factor from <see cref="TotalIters"/> on.</summary>
    public double EndFactor { get; }

    /// <summary>Steps of the ramp.</summary>
    public long TotalIters { get; }

    /// <inheritdoc/>
    public override double LearningRateAt(double baseLr, long epoch)
        => baseLr * (StartFactor + (EndFactor - StartFactor) * Math.Min(epoch, TotalIters) / TotalIters);
}

/// <summary>
/// torch SequentialLR: schedule i is in force from milestone i−1 (0 for the first) and sees the epoch
/// counted from its milestone, so warmup then cosine is
/// <c>new SequentialLR(opt, [new LinearLR(opt, 0.1, 1, w), new CosineAnnealingLR(opt, total − w)], [w])</c>
/// (or <see cref="LRScheduler.WarmupCosine"/>). The inner schedules must be attached to the same optimizer;
/// only the sequence is stepped.
/// </summary>
public sealed class SequentialLR : LRScheduler
{
    private readonly LRScheduler[] _schedulers;
    private readonly long[] _milestones;

    /// <summary>Chains <paramref name="schedulers"/>, switching at the increasing <paramref name="milestones"/> (one fewer than the schedulers).</summary>
    public SequentialLR(Optimizer optimizer, LRScheduler[] schedulers, long[] milestones) : base(optimizer)
    {
        ArgumentNullException.ThrowIfNull(schedulers);
        ArgumentNullException.ThrowIfNull(milestones);
        if (schedulers.Length == 0) throw new ArgumentException("SequentialLR: needs at least one scheduler.");
        if (milestones.Length != schedulers.Length - 1)
            throw new ArgumentException($"SequentialLR: {schedulers.Length} schedulers need {schedulers.Length - 1} milestones; got {milestones.Length}.");
        for (int i = 0; i < schedulers.Length; i++)
            if (!ReferenceEquals(schedulers[i].Optimizer, optimizer))
                throw new ArgumentException($"SequentialLR: scheduler {i} ({schedulers[i].GetType().Name}) is attached to another optimizer.");
        for (int i = 0; i < milestones.Length; i++)
            if (milestones[i] <= 0 || (i > 0 && milestones[i] <= milestones[i - 1]))
                throw new ArgumentException($"SequentialLR: milestones must be positive and increasing; got [{string.Join(", ", milestones)}].");
        _schedulers = schedulers;
        _milestones = milestones;
        Apply();
    }

    /// <inheritdoc/>
    public override double LearningRateAt(double baseLr, long epoch)
    {
        int i = 0;
        while (i < _milestones.Length && epoch >= _milestones[i]) i++;
        long start = i == 0 ? 0 : _milestones[i - 1];
        return _schedulers[i].LearningRateAt(baseLr, epoch - start);
    }
}
