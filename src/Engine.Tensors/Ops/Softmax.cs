using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;
using Engine.Tensors.Kernels;

namespace Engine.Tensors;

/// <summary>Softmax and LogSoftmax with temperature, each with its own backward formula.</summary>
public sealed partial class Tensor
{
    /// <summary>
    /// softmax(x / T) along <paramref name="dim"/>: y_i = exp((x_i − m)/T) / Σ_j exp((x_j − m)/T), m the
    /// row max (so it never overflows). −∞ entries get probability 0; a row of only −∞ (or with +∞ or
    /// NaN) gives NaN, as in PyTorch. Float dtypes only; T must be positive and finite.
    /// Gradient: y · (g − Σ g·y) / T (sum along dim), from the saved output.
    /// </summary>
    public Tensor Softmax(int dim, double temperature = 1.0) => SoftmaxCore("softmax", dim, temperature, log: false);

    /// <summary>
    /// log softmax(x / T) along <paramref name="dim"/>: (x_i − m)/T − log Σ_j exp((x_j − m)/T). −∞ entries
    /// give −∞; a row of only −∞ gives NaN, as in PyTorch. Float dtypes only; T positive and finite.
    /// Gradient: (g − exp(y) · Σ g) / T, from the saved output y.
    /// </summary>
    public Tensor LogSoftmax(int dim, double temperature = 1.0) => SoftmaxCore("log_softmax", dim, temperature, log: true);

    private Tensor SoftmaxCore(string op, int dim, double temperature, bool log)
    {
        int d = ShapeUtil.NormalizeDim(op, dim, Rank);
        RequireFloat(op);
        if (!(temperature > 0) || !double.IsFinite(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), $"{op}: temperature must be positive and finite, got {temperature}.");
        if (KernelDispatch.IsAccelerated(this))
            return Record(KernelDispatch.Softmax(op, this, d, temperature, log), op, d, temperature, log, device: true);
        var y = Allocate(ShapeArray(), DType, zero: false, op);
        long n = Rank == 0 ? 1 : _shape[d], inner = 1;
        for (int i = d + 1; i < Rank; i++) inner *= _shape[i];
        if (inner == 1 || inner >= 16)
        {
            // Rows (dim last) or blocks of columns (dim inside, wide enough for vector rows): no transpose;
            // a non-contiguous input is made contiguous first (one copy).
            Tensor src;
            using (NoGrad()) src = Contiguous();
            using (src)
            {
                if (inner == 1) SoftmaxRows.Run(src, y, n, temperature, log);
                else SoftmaxRows.RunColumns(src, y, n == 0 ? 0 : NumEl / (n * inner), n, inner, temperature, log);
            }
        }
        else
        {
            // A narrow inner part: move dim last (one copy in, one copy out) and use the row kernel.
            var perm = Enumerable.Range(0, Rank).Where(i => i != d).Append(d).ToArray();
            using var _ = NoGrad();
            using var permuted = Permute(perm);
            using var rows = permuted.Contiguous();
            using var result = Allocate(rows.ShapeArray(), DType, zero: false, op);
            SoftmaxRows.Run(rows, result, n, temperature, log);
            using var yView = y.Permute(perm);
            Copy.Into(result, yView);
        }
        return Record(y, op, d, temperature, log, device: false);
    }

    /// <summary>
    /// Records softmax / log-softmax output <paramref name="y"/> of this tensor. The backward is the
    /// formula below in tensor ops (differentiable, so createGraph works); on a device, when no graph
    /// of the backward is wanted, the fused backward kernels (SoftmaxKernels) compute the same in one pass.
    /// </summary>
    private Tensor Record(Tensor y, string op, int d, double temperature, bool log, bool device)
    {
        return Graph.Record(y, op, [this], [y], (g, s) =>
        {
            var yy = s[0];
            if (device && !GradMode.IsEnabled) return [KernelDispatch.SoftmaxBackward(op, yy, g, d, temperature, log)];
            if (!log)
            {
                using var gy = g.Mul(yy);
                using var dot = gy.Sum(d, keepDim: true);
                using var centered = g.Sub(dot);
                using var grad = centered.Mul(yy);
                return [temperature == 1 ? grad.Alias() : grad.Div(temperature)];
            }
            // exp(y) is computed as softmax(y): y is normalized (logsumexp(y) = 0), and every change of y
            // that comes from x keeps it so; on those, softmax(y) and exp(y) have the same derivative.
            using var p = yy.Softmax(d);
            using var total = g.Sum(d, keepDim: true);
            using var pt = p.Mul(total);
            using var diff = g.Sub(pt);
            return [temperature == 1 ? diff.Alias() : diff.Div(temperature)];
        });
    }
}
