using Engine.Runtime;
using Engine.Tensors;

namespace Engine.Distillation;

/// <summary>The divergences of <see cref="Divergences"/> (internal: the public API is one method per loss).</summary>
internal enum DivergenceKind
{
    ForwardKl,
    ReverseKl,
    Jsd,
    TotalVariation,
    SkewKl,
    SkewReverseKl,
    Alpha,
    BdKd,
}

/// <summary>
/// One divergence call, validated and flattened: rows × classes, the per-row temperature, which rows
/// count, the per-row loss coefficient (T² or 1, divided by the reduction's denominator) and the
/// BD-KD weights. Both implementations (composite and fused) read the same problem, so they agree on
/// every option by construction.
/// </summary>
internal sealed class DivergenceProblem
{
    public required string Op { get; init; }
    public required DivergenceKind Kind { get; init; }

    /// <summary>β (JSD), λ (skew), α (alpha-divergence); unused otherwise.</summary>
    public double Param { get; init; }

    public required long[] RowsShape { get; init; }
    public required long Rows { get; init; }
    public required long Classes { get; init; }
    public required DivergenceOptions Options { get; init; }

    /// <summary>Per-row temperatures (length <see cref="Rows"/>), or null for the scalar <see cref="DivergenceOptions.Temperature"/>.</summary>
    public double[]? RowTemperature { get; init; }

    /// <summary>Per-row ignore flags, or null when no row is ignored.</summary>
    public bool[]? Ignored { get; init; }

    /// <summary>BD-KD's per-row weight w of the forward KL (1 − w weighs the reverse KL).</summary>
    public double[]? RowWeights { get; init; }

    /// <summary>Rows that count (not ignored).</summary>
    public long Counted { get; init; }

    /// <summary>The reduction's denominator (1 for None and Sum); 0 when nothing counts (the loss is then 0).</summary>
    public double Divisor { get; init; }

    public double TemperatureOf(long row) => RowTemperature?[row] ?? Options.Temperature;

    public bool IsIgnored(long row) => Ignored is not null && Ignored[row];

    /// <summary>The factor on row <paramref name="row"/>'s divergence in the result: T² (if asked) / divisor; 0 for ignored rows.</summary>
    public double LossCoefficient(long row)
    {
        if (IsIgnored(row) || Divisor == 0) return 0;
        double t = TemperatureOf(row);
        return (Options.ScaleByTemperatureSquared ? t * t : 1.0) / Divisor;
    }

    /// <summary>Indices of the rows that count, ascending.</summary>
    public long[] CountedRows()
    {
        var rows = new long[Counted];
        long k = 0;
        for (long r = 0; r < Rows; r++)
            if (!IsIgnored(r)) rows[k++] = r;
        return rows;
    }

    /// <summary>Validates the arguments of one divergence call and flattens them.</summary>
    public static DivergenceProblem Create(string op, DivergenceKind kind, double param, Tensor student, Tensor teacher,
        DivergenceOptions? options, Tensor? rowWeights = null)
    {
        ArgumentNullException.ThrowIfNull(student);
        ArgumentNullException.ThrowIfNull(teacher);
        options ??= DivergenceOptions.Default;
        if (student.Rank == 0 || !student.Shape.SequenceEqual(teacher.Shape))
            throw new ArgumentException($"{op}: expected student and teacher of the same shape [..., V] (rank ≥ 1, classes last); got student {Fmt(student.Shape)} and teacher {Fmt(teacher.Shape)}.");
        if (!student.DType.IsFloatingPoint() || student.DType != teacher.DType)
            throw new ArgumentException($"{op}: expected float32 or float64 student and teacher of one dtype; got student {student.DType.Name()} and teacher {teacher.DType.Name()}.");
        if (student.Device != teacher.Device)
            throw new ArgumentException($"{op}: student and teacher must be on one device; got {student.Device} and {teacher.Device}.");
        return Create(op, kind, param, student.ShapeArray(), options, rowWeights);
    }

    /// <summary>Validates the options of a divergence over logits of shape <paramref name="logitsShape"/> (which may never exist as a tensor: the fused linear form).</summary>
    public static DivergenceProblem Create(string op, DivergenceKind kind, double param, long[] logitsShape, DivergenceOptions options, Tensor? rowWeights)
    {
        long v = logitsShape[^1];
        if (v == 0)
            throw new ArgumentException($"{op}: the class dim (last) of {Fmt(logitsShape)} is empty; a distribution needs at least one class.");
        var rowsShape = logitsShape[..^1];
        long rows = rowsShape.Aggregate(1L, (a, b) => a * b);

        if (!(options.Temperature > 0) || !double.IsFinite(options.Temperature))
            throw new ArgumentOutOfRangeException(nameof(options), options.Temperature, $"{op}: temperature must be positive and finite; got {options.Temperature}.");

        double[]? rowT = null;
        if (options.RowTemperature is { } rt)
        {
            CheckRowShape(op, "per-row temperature", rt, rowsShape, rows);
            if (!rt.DType.IsFloatingPoint())
                throw new ArgumentException($"{op}: the per-row temperature must be float32 or float64; got {rt.DType.Name()}.");
            rowT = ReadDoubles(rt);
            for (long r = 0; r < rows; r++)
                if (!(rowT[r] > 0) || !double.IsFinite(rowT[r]))
                    throw new ArgumentOutOfRangeException(nameof(options), rowT[r], $"{op}: every per-row temperature must be positive and finite; row {r} has {rowT[r]}.");
        }

        bool[]? ignored = null;
        long counted = rows;
        if (options.Labels is { } labels)
        {
            CheckRowShape(op, "labels", labels, rowsShape, rows);
            if (labels.DType is not (DType.Int64 or DType.Int32))
                throw new ArgumentException($"{op}: labels must be int64 or int32; got {labels.DType.Name()}.");
            using var l64 = OnHost(labels);
            using var asLong = l64.To(DType.Int64);
            var values = asLong.ToArray<long>();
            ignored = new bool[rows];
            for (long r = 0; r < rows; r++)
                if (values[r] == options.IgnoreIndex) { ignored[r] = true; counted--; }
            if (counted == rows) ignored = null;
        }

        double[]? weights = null;
        if (kind == DivergenceKind.BdKd)
        {
            ArgumentNullException.ThrowIfNull(rowWeights);
            CheckRowShape(op, "per-sample weights", rowWeights, rowsShape, rows);
            if (!rowWeights.DType.IsFloatingPoint())
                throw new ArgumentException($"{op}: per-sample weights must be float32 or float64; got {rowWeights.DType.Name()}.");
            weights = ReadDoubles(rowWeights);
            for (long r = 0; r < rows; r++)
                if (!(weights[r] >= 0 && weights[r] <= 1))
                    throw new ArgumentOutOfRangeException(nameof(rowWeights), weights[r], $"{op}: per-sample weights must lie in [0, 1]; row {r} has {weights[r]}.");
        }

        double divisor = options.Reduction switch
        {
            Reduction.None or Reduction.Sum => 1,
            Reduction.Mean => (double)counted * v,
            Reduction.BatchMean => logitsShape.Length >= 3 ? logitsShape[0] : counted,
            Reduction.TokenMean => counted,
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Reduction, $"{op}: unknown reduction {options.Reduction}."),
        };
        if (counted == 0) divisor = 0;

        return new DivergenceProblem
        {
            Op = op, Kind = kind, Param = param, RowsShape = rowsShape, Rows = rows, Classes = v, Options = options,
            RowTemperature = rowT, Ignored = ignored, RowWeights = weights, Counted = counted, Divisor = divisor,
        };
    }

    private static void CheckRowShape(string op, string what, Tensor x, long[] rowsShape, long rows)
    {
        bool ok = x.Shape.SequenceEqual(rowsShape) || (x.Rank == 1 && x.Size(0) == rows);
        if (!ok)
            throw new ArgumentException($"{op}: {what} must have the rows' shape {Fmt(rowsShape)} (the logits' shape without the class dim) or [{rows}]; got {Fmt(x.Shape)}.");
    }

    /// <summary>
    /// A detached handle on <paramref name="x"/>'s values in host memory (a copy when it lives on an accelerator), so the
    /// dtype conversions below run on the CPU (devices may have no conversion kernel for them).
    /// </summary>
    private static Tensor OnHost(Tensor x)
    {
        var d = x.Detach();
        if (d.Device.Type == DeviceType.Cpu) return d;
        using (d) return d.To(Device.Cpu);
    }

    private static double[] ReadDoubles(Tensor x)
    {
        using var d = OnHost(x);
        if (d.DType == DType.Float64) return d.ToArray<double>();
        using var f = d.To(DType.Float64);
        return f.ToArray<double>();
    }

    internal static string Fmt(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
