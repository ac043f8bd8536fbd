using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>The divergences of the fused kernels (DivergenceOps.cs); the parameter each one takes is named.</summary>
internal enum DivergenceKind
{
    /// <summary>KL(p‖q), p the teacher's distribution, q the student's (no parameter).</summary>
    ForwardKL,

    /// <summary>KL(q‖p) (no parameter).</summary>
    ReverseKL,

    /// <summary>Generalized JSD_β (parameter β ∈ [0, 1]; β = 0 is forward KL and β = 1 reverse KL, as Liger).</summary>
    JensenShannon,

    /// <summary>Total variation ½·Σ|p − q| (no parameter).</summary>
    TotalVariation,

    /// <summary>Skew KL(p ‖ λp + (1−λ)q) (parameter λ ∈ [0, 1]).</summary>
    SkewKL,

    /// <summary>Skew reverse KL(q ‖ (1−λ)p + λq) (parameter λ ∈ [0, 1]).</summary>
    SkewReverseKL,

    /// <summary>Amari α-divergence (1 − Σ p^α q^(1−α)) / (α(1−α)) (parameter α, finite; α = 1 is forward KL and α = 0 reverse KL, the limits).</summary>
    Alpha,

    /// <summary>BD-KD's w·KL(p‖q) + (1−w)·KL(q‖p) (parameter w ∈ [0, 1]; per row through the dispatch's row parameters).</summary>
    BalancedKL,
}

/// <summary>What the teacher tensor of the divergence kernel holds (the values match Engine.Distillation's TeacherInput).</summary>
internal enum DivergenceTeacher
{
    /// <summary>Logits t: p = softmax(t/T).</summary>
    Logits = 0,

    /// <summary>Log-probabilities log p, used as given (no temperature, no normalization).</summary>
    LogProbabilities = 1,

    /// <summary>Probabilities p, used as given (log p = log t; zeros are masked classes).</summary>
    Probabilities = 2,
}

/// <summary>Host side of DivergenceKernels: group shape, grid, and the op that runs for a kind and parameter.</summary>
internal static class DivergencePlan
{
    /// <summary>
    /// Grid and group for <paramref name="rows"/> rows of <paramref name="n"/> classes: DimX = n rounded
    /// down to a power of two in [1, <paramref name="maxGroup"/>], DimY = maxGroup / DimX rows per group
    /// (grid x is 0 when there is nothing to do). <paramref name="maxGroup"/> is a power of two in
    /// [1, <see cref="DivergenceKernels.MaxGroup"/>] (tests use small groups on the emulator).
    /// </summary>
    public static (Dim3 Grid, Dim3 Group) For(long rows, long n, int maxGroup = DivergenceKernels.MaxGroup)
    {
        if (maxGroup < 1 || maxGroup > DivergenceKernels.MaxGroup || !System.Numerics.BitOperations.IsPow2(maxGroup))
            throw new ArgumentOutOfRangeException(nameof(maxGroup), $"divergence kernel: the group cap must be a power of two in [1, {DivergenceKernels.MaxGroup}], got {maxGroup}.");
        if (n > int.MaxValue || rows > int.MaxValue || rows * n > long.MaxValue / 8)
            throw new ArgumentException($"divergence kernel: {rows} rows of {n} classes exceed the kernel's 32-bit sizes.");
        int x = (int)Math.Min(maxGroup, 1L << System.Numerics.BitOperations.Log2((ulong)Math.Max(n, 1)));
        int y = maxGroup / x;
        long groups = n == 0 ? 0 : (rows + y - 1) / y;
        return (new Dim3((int)groups), new Dim3(x, y));
    }

    /// <summary>
    /// The op that computes <paramref name="kind"/> at <paramref name="parameter"/>: JSD at β = 0 / 1 and
    /// α-divergence at α = 1 / 0 are the forward / reverse KL (the exact ends: JSD_β itself is 0
    /// there, its limits divided by β or 1 − β are the KLs). Throws for a parameter outside the kind's range.
    /// </summary>
    public static DivergenceKind Resolve(DivergenceKind kind, double parameter)
    {
        switch (kind)
        {
            case DivergenceKind.JensenShannon:
                if (!(parameter >= 0 && parameter <= 1))
                    throw new ArgumentOutOfRangeException(nameof(parameter), parameter, $"divergence kernel: JSD's β must be in [0, 1], got {parameter}.");
                return parameter == 0 ? DivergenceKind.ForwardKL : parameter == 1 ? DivergenceKind.ReverseKL : kind;
            case DivergenceKind.SkewKL or DivergenceKind.SkewReverseKL:
                if (!(parameter >= 0 && parameter <= 1))
                    throw new ArgumentOutOfRangeException(nameof(parameter), parameter, $"divergence kernel: {kind}'s λ must be in [0, 1], got {parameter}.");
                return kind;
            case DivergenceKind.Alpha:
                if (!double.IsFinite(parameter))
                    throw new ArgumentOutOfRangeException(nameof(parameter), parameter, $"divergence kernel: α must be finite, got {parameter}.");
                return parameter == 1 ? DivergenceKind.ForwardKL : parameter == 0 ? DivergenceKind.ReverseKL : kind;
            case DivergenceKind.BalancedKL:
                if (!(parameter >= 0 && parameter <= 1))
                    throw new ArgumentOutOfRangeException(nameof(parameter), parameter, $"divergence kernel: BD-KD's weight must be in [0, 1], got {parameter}.");
                return kind;
            case DivergenceKind.ForwardKL or DivergenceKind.ReverseKL or DivergenceKind.TotalVariation:
                return kind;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "divergence kernel: unknown divergence.");
        }
    }

    /// <summary>The launch of the kernel instance for a resolved <paramref name="kind"/>.</summary>
    public static KernelSource Source(DivergenceKind kind) => kind switch
    {
        DivergenceKind.ForwardKL => DivergenceKernels.Launch.Divergence__ForwardKLOpSource,
        DivergenceKind.ReverseKL => DivergenceKernels.Launch.Divergence__ReverseKLOpSource,
        DivergenceKind.JensenShannon => DivergenceKernels.Launch.Divergence__JensenShannonOpSource,
        DivergenceKind.TotalVariation => DivergenceKernels.Launch.Divergence__TotalVariationOpSource,
        DivergenceKind.SkewKL => DivergenceKernels.Launch.Divergence__SkewKLOpSource,
        DivergenceKind.SkewReverseKL => DivergenceKernels.Launch.Divergence__SkewReverseKLOpSource,
        DivergenceKind.Alpha => DivergenceKernels.Launch.Divergence__AlphaOpSource,
        DivergenceKind.BalancedKL => DivergenceKernels.Launch.Divergence__BalancedKLOpSource,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "divergence kernel: unknown divergence."),
    };
}
