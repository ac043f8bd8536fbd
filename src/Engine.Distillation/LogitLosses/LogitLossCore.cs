using System.Buffers;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Distillation;

/// <summary>
/// The rows of a logits tensor [..., V]: how many, which count (labels not equal to the ignore index),
/// and the batch shape a per-row result takes.
/// </summary>
internal sealed class RowLayout
{
    /// <summary>Number of rows (product of all dims but the last).</summary>
    public long Rows;

    /// <summary>V, the size of the last (class) dim.</summary>
    public long Classes;

    /// <summary>The logits' shape without its last dim (the shape of a per-row result).</summary>
    public long[] BatchShape = [];

    /// <summary>Size of dim 0 of the logits when their rank is at least 3 (BatchMean's divisor there).</summary>
    public long Dim0;

    /// <summary>Rank of the logits.</summary>
    public int Rank;

    /// <summary>Per row: counted (label present and not the ignore index); null when every row counts.</summary>
    public bool[]? Counted;

    /// <summary>The labels as numbers (null without labels); an ignored row holds the ignore index.</summary>
    public long[]? Labels;

    /// <summary>Rows that count.</summary>
    public long CountedRows;

    /// <summary>Indices of the counted rows, in order (only when <see cref="Counted"/> is set).</summary>
    public long[] Keep = [];

    /// <summary>True for a row that contributes.</summary>
    public bool Counts(long row) => Counted is null || Counted[row];
}

/// <summary>
/// What every logit loss of this folder shares: argument checks, the row layout with ignored rows,
/// reductions, teacher-input conversion, and the fused-node machinery (gradient written in the forward
/// pass, backward only rescales it; with createGraph the backward recomputes through the composite form).
/// </summary>
internal static class LogitLossCore
{
    /// <summary>Shape as text: [2, 3].</summary>
    public static string Fmt(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <summary>Student logits: float32/float64, rank ≥ 1, at least one class.</summary>
    public static void CheckLogits(string op, Tensor x, string name)
    {
        ArgumentNullException.ThrowIfNull(x, name);
        if (!x.DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: {name} must be float32 or float64; got {x.DType.Name()} of shape {Fmt(x.Shape)}.");
        if (x.Rank < 1 || x.Size(-1) < 1)
            throw new ArgumentException($"{op}: {name} must have a class dim (last) of size ≥ 1; got shape {Fmt(x.Shape)}.");
    }

    /// <summary>A second float tensor of the student's shape, dtype and device.</summary>
    public static void CheckLike(string op, Tensor student, Tensor other, string name)
    {
        ArgumentNullException.ThrowIfNull(other, name);
        if (!other.Shape.SequenceEqual(student.Shape) || other.DType != student.DType)
            throw new ArgumentException($"{op}: {name} must have the student logits' shape and dtype {Fmt(student.Shape)} ({student.DType.Name()}); got {Fmt(other.Shape)} ({other.DType.Name()}).");
        if (other.Device != student.Device)
            throw new ArgumentException($"{op}: {name} is on {other.Device} but the student logits are on {student.Device}.");
    }

    /// <summary>T positive and finite.</summary>
    public static void CheckTemperature(string op, double temperature, string name = "temperature")
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(name, temperature, $"{op}: {name} must be positive and finite; got {temperature}.");
    }

    /// <summary>
    /// The row layout of <paramref name="student"/>, with the labels (int64, the batch shape; values in
    /// [0, V) or the ignore index) when given. Throws when labels are required and missing.
    /// </summary>
    public static RowLayout Layout(string op, Tensor student, Tensor? labels, long ignoreIndex, bool labelsRequired)
    {
        var layout = new RowLayout
        {
            Rank = student.Rank,
            Classes = student.Size(-1),
            BatchShape = student.ShapeArray()[..^1],
            Dim0 = student.Rank >= 3 ? student.Size(0) : 0,
        };
        layout.Rows = layout.BatchShape.Aggregate(1L, (a, b) => a * b);
        layout.CountedRows = layout.Rows;
        if (labels is null)
        {
            if (labelsRequired) throw new ArgumentNullException(nameof(labels), $"{op}: labels are required (the true class of each row).");
            return layout;
        }
        if (labels.DType != DType.Int64 || !labels.Shape.SequenceEqual(layout.BatchShape))
            throw new ArgumentException($"{op}: labels must be int64 of the logits' shape without the class dim, {Fmt(layout.BatchShape)} (logits {Fmt(student.Shape)}); got {labels.DType.Name()} {Fmt(labels.Shape)}.");
        var values = labels.ToArray<long>();
        var counted = new bool[layout.Rows];
        var keep = new List<long>();
        for (long r = 0; r < layout.Rows; r++)
        {
            long y = values[r];
            if (y == ignoreIndex) continue;
            if (y < 0 || y >= layout.Classes)
                throw new ArgumentException($"{op}: label {y} of row {r} is outside [0, {layout.Classes}) and is not the ignore index {ignoreIndex} (logits {Fmt(student.Shape)}).");
            counted[r] = true;
            keep.Add(r);
        }
        layout.Labels = values;
        layout.CountedRows = keep.Count;
        if (keep.Count != layout.Rows)
        {
            layout.Counted = counted;
            layout.Keep = keep.ToArray();
        }
        return layout;
    }

    /// <summary>Per-row temperatures (positive, finite) of the batch shape, as numbers; null for none.</summary>
    public static double[]? RowTemperatures(string op, Tensor? temperatures, RowLayout layout)
    {
        if (temperatures is null) return null;
        if (!temperatures.DType.IsFloatingPoint() || !temperatures.Shape.SequenceEqual(layout.BatchShape))
            throw new ArgumentException($"{op}: per-row temperatures must be float32/float64 of the logits' shape without the class dim, {Fmt(layout.BatchShape)}; got {temperatures.DType.Name()} {Fmt(temperatures.Shape)}.");
        using var f = temperatures.Detach();
        using var d = f.To(DType.Float64);
        var values = d.ToArray<double>();
        for (int i = 0; i < values.Length; i++)
            if (!(values[i] > 0) || double.IsInfinity(values[i]))
                throw new ArgumentOutOfRangeException(nameof(temperatures), $"{op}: per-row temperature {i} must be positive and finite; got {values[i]}.");
        return values;
    }

    /// <summary>
    /// The divisor of a reduction: Sum 1, Mean counted·V, BatchMean counted rows (rank ≤ 2) or dim 0
    /// (rank ≥ 3), TokenMean counted rows. A divisor of 0 (nothing counted) becomes 1: the sum is 0 then.
    /// </summary>
    public static double Divisor(Reduction reduction, RowLayout layout)
    {
        double d = reduction switch
        {
            Reduction.Sum or Reduction.None => 1,
            Reduction.Mean => (double)layout.CountedRows * layout.Classes,
            Reduction.BatchMean => layout.Rank >= 3 ? layout.Dim0 : layout.CountedRows,
            Reduction.TokenMean => layout.CountedRows,
            _ => throw new ArgumentOutOfRangeException(nameof(reduction), reduction, "unknown reduction"),
        };
        return d == 0 ? 1 : d;
    }

    // ------------------------------------------------------------------ composite helpers

    /// <summary>x viewed as [rows, last] with only the counted rows (index_select; ignored rows get exactly 0 gradient).</summary>
    public static Tensor CountedRows(Tensor x, RowLayout layout)
    {
        long last = x.Size(-1);
        using var flat = x.Reshape(layout.Rows, last);
        if (layout.Counted is null) return flat.Reshape(layout.Rows, last);
        using var index = KeptIndex(layout, flat.Device);
        return flat.IndexSelect(0, index);
    }

    /// <summary>Per-row temperatures of the counted rows as a [n, 1] column (keeps the tensor's graph), or null.</summary>
    public static Tensor? TemperatureColumn(Tensor? temperatures, RowLayout layout, DType dtype)
    {
        if (temperatures is null) return null;
        using var t = temperatures.DType == dtype ? temperatures.Alias() : temperatures.To(dtype);
        using var col = t.Reshape(layout.Rows, 1);
        if (layout.Counted is null) return col.Reshape(layout.Rows, 1);
        using var index = KeptIndex(layout, col.Device);
        return col.IndexSelect(0, index);
    }

    /// <summary>The counted rows' indices as an int64 tensor on <paramref name="device"/> (the operands' device).</summary>
    public static Tensor KeptIndex(RowLayout layout, Engine.Runtime.Device device)
    {
        var index = Tensor.FromArray(layout.Keep, layout.Keep.Length);
        if (device.Type == Engine.Runtime.DeviceType.Cpu) return index;
        using (index) return index.To(device);
    }

    /// <summary>x / T: the scalar, or each row by its own temperature column.</summary>
    public static Tensor Scale(Tensor x, double temperature, Tensor? column)
        => column is not null ? x.Div(column) : temperature == 1 ? x.Mul(1.0) : x.Div(temperature);

    /// <summary>
    /// The teacher's log-probabilities over the classes from what the tensor holds: log_softmax(t/T) for
    /// logits; log_softmax(t) for log-probabilities and log_softmax(log t) for probabilities (they are
    /// renormalized, a no-op on normalized input; the temperature is not applied to them).
    /// </summary>
    public static Tensor TeacherLogProbs(Tensor t, TeacherInput input, double temperature, Tensor? column)
    {
        switch (input)
        {
            case TeacherInput.Logits:
                {
                    using var z = Scale(t, temperature, column);
                    return z.LogSoftmax(-1);
                }
            case TeacherInput.LogProbabilities:
                return t.LogSoftmax(-1);
            case TeacherInput.Probabilities:
                {
                    using var lt = t.Log();
                    return lt.LogSoftmax(-1);
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(input), input, "unknown teacher input");
        }
    }

    /// <summary>
    /// Elementwise a·(log a − log b) with 0 where a = 0 (also when log b = −∞ there), written so that no
    /// NaN reaches any gradient: both logs are replaced by 0 where a = 0 before the subtraction.
    /// </summary>
    public static Tensor XLogXOverY(Tensor a, Tensor logA, Tensor logB)
    {
        using var positive = a.Gt(0);
        using var la = Tensor.Where(positive, logA, 0.0);
        using var lb = Tensor.Where(positive, logB, 0.0);
        using var diff = la.Sub(lb);
        return a.Mul(diff);
    }

    /// <summary>log a where a &gt; 0 and 0 where a = 0: for the log p of an x·log x term, so that a zero
    /// probability sends no 0/0 into a gradient (its term is guarded to 0 anyway).</summary>
    public static Tensor SafeLog(Tensor a)
    {
        using var positive = a.Gt(0);
        using var safe = Tensor.Where(positive, a, 1.0);
        return safe.Log();
    }

    /// <summary>Elementwise a·log b with 0 where a = 0 (no NaN from 0·(−∞), in values or gradients).</summary>
    public static Tensor XLogY(Tensor a, Tensor logB)
    {
        using var positive = a.Gt(0);
        using var lb = Tensor.Where(positive, logB, 0.0);
        return a.Mul(lb);
    }

    /// <summary>
    /// Reduces the per-counted-row losses [n] as <paramref name="reduction"/> says. None: a tensor of the
    /// batch shape with 0 at ignored rows (index_add into zeros).
    /// </summary>
    public static Tensor Reduce(Tensor rowLoss, RowLayout layout, Reduction reduction)
    {
        if (reduction == Reduction.None)
        {
            if (layout.Counted is null) return rowLoss.Reshape(layout.BatchShape);
            using var zeros = Tensor.Zeros([layout.Rows], rowLoss.DType, rowLoss.Device);
            using var index = KeptIndex(layout, rowLoss.Device);
            using var full = zeros.IndexAdd(0, index, rowLoss);
            return full.Reshape(layout.BatchShape);
        }
        using var sum = rowLoss.Sum();
        double divisor = Divisor(reduction, layout);
        return divisor == 1 ? sum.Mul(1.0) : sum.Div(divisor);
    }

    /// <summary>Which form runs: the fused one when it applies (CPU, only the student needs a gradient), else the composite.</summary>
    public static bool UseFused(string op, LossImplementation implementation, Tensor student, params Tensor?[] others)
    {
        if (implementation == LossImplementation.Composite) return false;
        string? why = null;
        if (student.Device.Type != DeviceType.Cpu) why = $"the logits are on {student.Device} and the fused form is CPU-only";
        else if (GradMode.IsEnabled)
            foreach (var o in others)
                if (o is not null && o.RequiresGrad) { why = "an input other than the student logits requires grad (the fused form differentiates the student only)"; break; }
        if (why is null) return true;
        if (implementation == LossImplementation.Fused)
            throw new InvalidOperationException($"{op}: the fused form does not apply here: {why}. Use LossImplementation.Auto or Composite.");
        return false;
    }

    // ------------------------------------------------------------------ fused machinery

    /// <summary>Rows of V doubles of scratch every fused row function gets (<see cref="FusedRow"/>'s work).</summary>
    public const int WorkRows = 4;

    /// <summary>
    /// One row of a fused loss: given the student row s (float64 copy) returns the row's loss and, when
    /// <paramref name="grad"/> is not empty, writes d(row loss)/ds into it. <paramref name="work"/> is
    /// <see cref="WorkRows"/>·V doubles of scratch (contents undefined on entry).
    /// </summary>
    public delegate double FusedRow(long row, ReadOnlySpan<double> s, Span<double> grad, Span<double> work);

    /// <summary>Reads rows of a contiguous float32/float64 tensor [rows, width] into float64 spans.</summary>
    public readonly unsafe struct RowReader
    {
        private readonly nint _ptr;
        private readonly bool _single;
        private readonly long _width;

        /// <summary>Reader over <paramref name="contiguous"/> (kept alive by the caller).</summary>
        public RowReader(Tensor contiguous, long width)
        {
            _single = contiguous.DType == DType.Float32;
            _ptr = _single ? (nint)contiguous.Ptr<float>() : (nint)contiguous.Ptr<double>();
            _width = width;
        }

        /// <summary>Copies row <paramref name="row"/> into <paramref name="dst"/> (length = width; float32 widened, vectorized).</summary>
        public void Read(long row, Span<double> dst)
        {
            if (_single)
                TensorPrimitives.ConvertTruncating<float, double>(new ReadOnlySpan<float>((float*)_ptr + row * _width, dst.Length), dst);
            else
                new ReadOnlySpan<double>((double*)_ptr + row * _width, dst.Length).CopyTo(dst);
        }
    }

    /// <summary>
    /// Runs a fused loss: every counted row through <paramref name="body"/> (rows in parallel, float64
    /// per row), the reduction in float64 in row order (so the result does not depend on the thread
    /// count), and — when the student needs a gradient — the gradient (already multiplied by the
    /// reduction's 1/divisor) saved on a graph node. Its backward multiplies the saved gradient by the
    /// incoming one; with createGraph (grad mode on during backward) it rebuilds the loss with
    /// <paramref name="composite"/> and differentiates that, so higher-order gradients work.
    /// </summary>
    /// <param name="op">Name of the op (graph node name and messages).</param>
    /// <param name="student">The student logits [..., V] on the CPU.</param>
    /// <param name="layout">The rows.</param>
    /// <param name="reduction">How rows combine.</param>
    /// <param name="body">The row function.</param>
    /// <param name="composite">Builds the composite loss from (student, saved extras); must not use the fused form.</param>
    /// <param name="extras">Tensors the composite needs (kept alive by the node until backward).</param>
    public static Tensor RunFused(string op, Tensor student, RowLayout layout, Reduction reduction, FusedRow body,
        Func<Tensor, Tensor[], Tensor> composite, Tensor[] extras)
    {
        bool needGrad = GradMode.IsEnabled && student.RequiresGrad;
        long rows = layout.Rows, v = layout.Classes;
        int width = checked((int)v);
        var losses = new double[rows];
        double factor = reduction == Reduction.None ? 1 : 1 / Divisor(reduction, layout);
        Tensor? grad = needGrad ? Tensor.Zeros(student.ShapeArray(), student.DType) : null;
        using (Tensor.NoGrad())
        using (var s = student.Contiguous())
        {
            var reader = new RowReader(s, v);
            nint gptr = 0;
            bool single = student.DType == DType.Float32;
            unsafe
            {
                if (grad is not null) gptr = single ? (nint)grad.Ptr<float>() : (nint)grad.Ptr<double>();
            }
            Parallelism.For(rows, rows * v >= Parallelism.ElementwiseThreshold / 4 && rows > 1, r =>
            {
                if (!layout.Counts(r)) return;
                var sBuf = ArrayPool<double>.Shared.Rent(width);
                var wBuf = ArrayPool<double>.Shared.Rent(width * WorkRows);
                var gBuf = needGrad ? ArrayPool<double>.Shared.Rent(width) : null;
                try
                {
                    var sRow = sBuf.AsSpan(0, width);
                    reader.Read(r, sRow);
                    var gRow = gBuf is null ? Span<double>.Empty : gBuf.AsSpan(0, width);
                    losses[r] = body(r, sRow, gRow, wBuf.AsSpan(0, width * WorkRows));
                    if (gBuf is not null)
                    {
                        if (factor != 1) TensorPrimitives.Multiply(gRow, factor, gRow);
                        unsafe
                        {
                            if (single) TensorPrimitives.ConvertTruncating<double, float>(gRow, new Span<float>((float*)gptr + r * v, width));
                            else gRow.CopyTo(new Span<double>((double*)gptr + r * v, width));
                        }
                    }
                }
                finally
                {
                    ArrayPool<double>.Shared.Return(sBuf);
                    ArrayPool<double>.Shared.Return(wBuf);
                    if (gBuf is not null) ArrayPool<double>.Shared.Return(gBuf);
                }
            });
        }

        Tensor result;
        if (reduction == Reduction.None)
        {
            var d = Tensor.FromArray(losses, layout.BatchShape.Length == 0 ? [] : layout.BatchShape);
            if (student.DType == DType.Float64) result = d;
            else
            {
                using (d) result = d.To(student.DType);
            }
        }
        else
        {
            double total = 0;
            for (long r = 0; r < rows; r++) total += losses[r]; // row order: independent of the thread count
            result = Tensor.Scalar(total * factor, student.DType);
        }
        if (grad is null) return result;

        bool perRow = reduction == Reduction.None;
        var saved = new Tensor[2 + extras.Length];
        saved[0] = grad;
        saved[1] = student;
        extras.CopyTo(saved, 2);
        var recorded = Graph.Record(result, op, [student], saved, (g, h) =>
        {
            if (!GradMode.IsEnabled)
            {
                // The gradient was written in the forward pass: only rescale it by the incoming gradient.
                if (perRow)
                {
                    using var col = g.Unsqueeze(-1);
                    return [h[0].Mul(col)];
                }
                return [h[0].Mul(g)];
            }
            // createGraph: rebuild the loss through the composite form on a fresh node over the student
            // (s·1, so the nested gradient stops there) and differentiate it with the graph recorded.
            using var sIn = h[1].Mul(1.0);
            using var loss = composite(sIn, h[2..]);
            var grads = Autograd.Grad([loss], [sIn], [g], createGraph: true);
            return [grads[0]];
        });
        grad.Dispose(); // the node holds its own handle
        return recorded;
    }

    // ------------------------------------------------------------------ float64 row math

    /// <summary>log(e^a + e^b), exact at −∞.</summary>
    public static double LogAddExp(double a, double b)
    {
        if (double.IsNegativeInfinity(a)) return b;
        if (double.IsNegativeInfinity(b)) return a;
        double m = Math.Max(a, b);
        return m + Math.Log(Math.Exp(a - m) + Math.Exp(b - m));
    }

    /// <summary>log Σ exp(x_j) over j ≠ <paramref name="skip"/> (−∞ for an empty set), max-subtracted.</summary>
    public static double LogSumExp(ReadOnlySpan<double> x, int skip = -1)
    {
        double m = double.NegativeInfinity;
        for (int j = 0; j < x.Length; j++) if (j != skip && x[j] > m) m = x[j];
        if (double.IsNegativeInfinity(m)) return double.NegativeInfinity;
        if (double.IsPositiveInfinity(m)) return m;
        double sum = 0;
        for (int j = 0; j < x.Length; j++) if (j != skip) sum += Math.Exp(x[j] - m);
        return m + Math.Log(sum);
    }

    /// <summary>
    /// log Σ_j exp(x_j), vectorized (TensorPrimitives over float64): m = max x, e ← exp(x − m),
    /// <paramref name="sum"/> = Σ e, result m + log sum. All −∞: −∞ with e = 0 and sum = 0.
    /// </summary>
    public static double LogSumExp(ReadOnlySpan<double> x, Span<double> e, out double sum)
    {
        double m = TensorPrimitives.Max(x);
        if (double.IsNegativeInfinity(m))
        {
            e.Clear();
            sum = 0;
            return m;
        }
        TensorPrimitives.Subtract(x, m, e);
        TensorPrimitives.Exp(e, e);
        sum = TensorPrimitives.Sum<double>(e);
        return m + Math.Log(sum);
    }

    /// <summary>
    /// log Σ_{j≠skip} exp(x_j), vectorized; e ← exp(x − m) with e[skip] = 0, <paramref name="sum"/> = Σ e.
    /// x[skip] is replaced by m (exp 0 = 1) during the exp pass and restored, and then e[skip] is zeroed, so
    /// the skipped entry needs no −∞ (nor an overflowing x[skip] − m) in the vector exp, and the result is exact.
    /// </summary>
    public static double LogSumExpExcept(Span<double> x, int skip, Span<double> e, out double sum)
    {
        double xs = x[skip];
        x[skip] = double.NegativeInfinity;
        double m = TensorPrimitives.Max(x);
        if (double.IsNegativeInfinity(m))
        {
            x[skip] = xs;
            e.Clear();
            sum = 0;
            return m;
        }
        x[skip] = m;
        TensorPrimitives.Subtract(x, m, e);
        TensorPrimitives.Exp(e, e);
        x[skip] = xs;
        e[skip] = 0;
        sum = TensorPrimitives.Sum<double>(e);
        return m + Math.Log(sum);
    }

    /// <summary>
    /// The teacher row as scores u whose softmax is the teacher distribution: t/T for logits, the values
    /// themselves for log-probabilities, log t for probabilities (log 0 = −∞).
    /// </summary>
    public static void TeacherScores(Span<double> t, TeacherInput input, double temperature)
    {
        switch (input)
        {
            case TeacherInput.Logits:
                if (temperature != 1) for (int j = 0; j < t.Length; j++) t[j] /= temperature;
                break;
            case TeacherInput.LogProbabilities:
                break;
            default:
                for (int j = 0; j < t.Length; j++) t[j] = t[j] > 0 ? Math.Log(t[j]) : double.NegativeInfinity;
                break;
        }
    }

    /// <summary>In place: x ← log_softmax(x) (float64, max-subtracted).</summary>
    public static void LogSoftmaxInPlace(Span<double> x)
    {
        double lse = LogSumExp(x);
        for (int j = 0; j < x.Length; j++) x[j] -= lse;
    }
}
