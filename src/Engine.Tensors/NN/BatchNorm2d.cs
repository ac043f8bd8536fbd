using System.Globalization;

namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.BatchNorm2d over [N, C, H, W]: y = (x − μ) / √(σ² + eps) · weight + bias per channel.
/// <para>
/// Training (or <c>trackRunningStats: false</c>): μ and σ² are the batch's mean and biased variance over
/// N, H, W, and (when tracking) the running statistics move towards them:
/// running_mean ← (1 − m)·running_mean + m·μ, running_var ← (1 − m)·running_var + m·σ²·n/(n − 1)
/// (the unbiased batch variance, n = N·H·W, as PyTorch), num_batches_tracked += 1; m = momentum, or
/// 1/num_batches_tracked (a cumulative average) when momentum is null.
/// Evaluation: μ and σ² are the running statistics.
/// </para>
/// Buffers running_mean (zeros), running_var (ones), num_batches_tracked (int64 0-d); parameters weight
/// (ones) and bias (zeros) when affine. The gradient flows through the batch statistics (composite ops).
/// </summary>
public sealed class BatchNorm2d : Module
{
    /// <summary>A layer over <paramref name="numFeatures"/> channels.</summary>
    public BatchNorm2d(long numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
    {
        if (numFeatures < 1) throw new ArgumentException($"BatchNorm2d: num_features must be positive, got {numFeatures}.");
        if (!(eps >= 0)) throw new ArgumentException($"BatchNorm2d: eps must be ≥ 0, got {eps}.");
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        Affine = affine;
        TrackRunningStats = trackRunningStats;
        RegisterParameter("weight", affine ? Tensor.Ones([numFeatures]) : null);
        RegisterParameter("bias", affine ? Tensor.Zeros([numFeatures]) : null);
        RegisterBuffer("running_mean", trackRunningStats ? Tensor.Zeros([numFeatures]) : null);
        RegisterBuffer("running_var", trackRunningStats ? Tensor.Ones([numFeatures]) : null);
        RegisterBuffer("num_batches_tracked", trackRunningStats ? Tensor.Zeros([], DType.Int64) : null);
    }

    /// <summary>Channels (C).</summary>
    public long NumFeatures { get; }

    /// <summary>Added to the variance before the square root.</summary>
    public double Eps { get; }

    /// <summary>Weight of the newest batch in the running statistics (null: cumulative average).</summary>
    public double? Momentum { get; }

    /// <summary>Whether the layer has weight and bias.</summary>
    public bool Affine { get; }

    /// <summary>Whether running statistics are kept (and used in evaluation mode).</summary>
    public bool TrackRunningStats { get; }

    /// <summary>Per-channel scale, or null when not affine.</summary>
    public Tensor? Weight => GetParameter("weight");

    /// <summary>Per-channel shift, or null when not affine.</summary>
    public Tensor? Bias => GetParameter("bias");

    /// <summary>Running mean [C], or null when not tracking.</summary>
    public Tensor? RunningMean => GetBuffer("running_mean");

    /// <summary>Running (unbiased) variance [C], or null when not tracking.</summary>
    public Tensor? RunningVar => GetBuffer("running_var");

    /// <summary>Number of training batches seen (int64, 0-d), or null when not tracking.</summary>
    public Tensor? NumBatchesTracked => GetBuffer("num_batches_tracked");

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        long c = NumFeatures;
        if (input.Rank != 4 || input.Shape[1] != c)
            throw new ArgumentException($"{Describe()}: expected input of shape [N, {c}, H, W], got {ShapeUtil.Format(input.Shape)}.");
        if (!input.DType.IsFloatingPoint() || (Weight is not null && input.DType != Weight.DType))
            throw new ArgumentException($"{Describe()}: input is {input.DType.Name()} but the layer is {(Weight ?? RunningMean)?.DType.Name() ?? "float"}; convert one of them.");
        bool useBatchStats = Training || !TrackRunningStats;
        Tensor normalized;
        if (useBatchStats)
        {
            long n = input.Shape[0] * input.Shape[2] * input.Shape[3];
            if (n <= 1)
                throw new ArgumentException($"{Describe()}: expected more than 1 value per channel when training, got input of shape {ShapeUtil.Format(input.Shape)}.");
            if (Kernels.KernelDispatch.IsAccelerated(input))
            {
                // One fused Welford-statistics + normalize kernel pair, and a fused backward (kernels/Norm/BatchNormKernels.cs).
                var (y, batchMean, batchVar) = Kernels.KernelDispatch.BatchNorm2dTrain(input, Weight, Bias, Eps);
                using (batchMean)
                using (batchVar)
                    if (Training && TrackRunningStats) UpdateRunningStats(batchMean, batchVar, n);
                return y;
            }
            int[] dims = [0, 2, 3];
            using var mean = input.Mean(dims, keepDim: true);
            using var variance = input.Var(dims, keepDim: true, correction: 0);
            if (Training && TrackRunningStats) UpdateRunningStats(mean, variance, n);
            using var centered = input.Sub(mean);
            using var veps = variance.Add(Eps);
            using var invStd = veps.Rsqrt();
            normalized = centered.Mul(invStd);
        }
        else
        {
            using var rm = RunningMean!.View(1, c, 1, 1);
            using var rv = RunningVar!.View(1, c, 1, 1);
            using var centered = input.Sub(rm);
            using var veps = rv.Add(Eps);
            using var invStd = veps.Rsqrt();
            normalized = centered.Mul(invStd);
        }
        if (!Affine) return normalized;
        using (normalized)
        using (var w = Weight!.View(1, c, 1, 1))
        using (var b = Bias!.View(1, c, 1, 1))
        using (var scaled = normalized.Mul(w))
            return scaled.Add(b);
    }

    private void UpdateRunningStats(Tensor mean, Tensor variance, long n)
    {
        using var _ = Tensor.NoGrad();
        var count = NumBatchesTracked!;
        count.Fill_(count.ToDouble() + 1);
        double m = Momentum ?? 1.0 / count.ToDouble();
        long c = NumFeatures;
        using var batchMean = mean.Reshape(c);
        using var batchVar = variance.Reshape(c);
        using var unbiased = batchVar.Mul((double)n / (n - 1));
        using var oldMean = RunningMean!.Mul(1 - m);
        using var newMean = batchMean.Mul(m);
        using var mixedMean = oldMean.Add(newMean);
        RunningMean!.CopyFrom_(mixedMean);
        using var oldVar = RunningVar!.Mul(1 - m);
        using var newVar = unbiased.Mul(m);
        using var mixedVar = oldVar.Add(newVar);
        RunningVar!.CopyFrom_(mixedVar);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr()
        => $"{NumFeatures}, eps={Eps.ToString("G", CultureInfo.InvariantCulture)}, momentum={(Momentum is { } m ? m.ToString("G", CultureInfo.InvariantCulture) : "None")}, " +
           $"affine={(Affine ? "True" : "False")}, track_running_stats={(TrackRunningStats ? "True" : "False")}";
}
