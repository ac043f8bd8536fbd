using Engine.Tensors;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// The sequence layout of the testbed: a batch of sequences is int64 [B, N+1] whose column 0 is
/// <see cref="SyntheticOracle.Bos"/>; a model reads <see cref="Inputs"/> = columns 0..N−1 and predicts
/// <see cref="Targets"/> = columns 1..N (position i predicts token i+1).
/// </summary>
public static class LmData
{
    /// <summary>Columns 0..min(M, N)−1 of <paramref name="sequences"/> [B, M] (a contiguous copy), the model inputs.</summary>
    /// <param name="sequences">int64 [B, M], M ≥ 1.</param>
    /// <param name="contextLength">N.</param>
    /// <param name="op">The caller's name, for the error message.</param>
    /// <exception cref="ArgumentException">Not an int64 matrix with at least one column.</exception>
    public static Tensor Inputs(Tensor sequences, int contextLength, string op = "LmData.Inputs")
    {
        Check(sequences, op, minColumns: 1);
        long m = Math.Min(sequences.Size(1), contextLength);
        using var view = sequences.Narrow(1, 0, m);
        return view.Contiguous();
    }

    /// <summary>Columns 1..M−1 of <paramref name="sequences"/> [B, M] (a contiguous copy), the next tokens to predict.</summary>
    /// <exception cref="ArgumentException">Not an int64 matrix with at least two columns.</exception>
    public static Tensor Targets(Tensor sequences, string op = "LmData.Targets")
    {
        Check(sequences, op, minColumns: 2);
        using var view = sequences.Narrow(1, 1, sequences.Size(1) - 1);
        return view.Contiguous();
    }

    private static void Check(Tensor sequences, string op, int minColumns)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.DType != DType.Int64 || sequences.Rank != 2 || sequences.Size(1) < minColumns)
            throw new ArgumentException($"{op}: expected int64 token sequences [B, M] with M ≥ {minColumns}; got {sequences.DType.Name()} {LogitLossCore.Fmt(sequences.Shape)}.");
    }
}
