using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Distillation;

/// <summary>
/// The fused form on the CPU: rows in parallel through <see cref="FusedRows"/>, the loss and the student's
/// gradient from one pass over the inputs; the autograd node keeps that gradient and its backward only
/// rescales it by the incoming gradient (per row for <see cref="Reduction.None"/>).
/// <para>
/// What it covers: float32 logits on the CPU, gradient for the student only. A teacher that requires grad
/// (while grad mode is on) or float64 inputs take the composite form under
/// <see cref="LossImplementation.Auto"/> and are an error under <see cref="LossImplementation.Fused"/>;
/// accelerator tensors take <see cref="DeviceFusedDivergence"/> (the divergence kernel).
/// A backward with createGraph (higher order) recomputes the loss with the composite form on the saved
/// inputs and differentiates that, so the gradient it returns is itself differentiable.
/// </para>
/// <para>
/// Memory: the gradient (the size of the student logits) is allocated in the forward when the student
/// requires grad; each worker thread keeps a <see cref="RowWorkspace"/> (two row-sized float buffers and
/// per-chunk sums), reused across calls. A teacher given as probabilities is converted to log-probabilities first
/// (one temporary of the teacher's size); non-contiguous inputs are copied once.
/// </para>
/// </summary>
internal static unsafe class FusedDivergence
{
    [ThreadStatic] private static RowWorkspace? t_workspace;

    /// <summary>Why the fused form cannot run these inputs, or null when it can.</summary>
    public static string? Unsupported(DivergenceProblem pb, Tensor student, Tensor teacher)
    {
        if (student.DType != DType.Float32) return $"the fused form takes float32 logits, not {student.DType.Name()}";
        if (student.Device.Type != DeviceType.Cpu) return $"the fused CPU form takes CPU tensors, not {student.Device}";
        if (GradMode.IsEnabled && teacher.RequiresGrad) return "the fused form computes the student's gradient only, and the teacher requires grad";
        if (pb.Classes > int.MaxValue / 2) return $"V = {pb.Classes} classes is too large for one fused row";
        return null;
    }

    public static Tensor Compute(DivergenceProblem pb, Tensor student, Tensor teacher)
    {
        bool needGrad = GradMode.IsEnabled && student.RequiresGrad;
        long n = pb.Rows;
        using var sDetached = student.Detach();
        using var tDetached = teacher.Detach();
        using var sc = sDetached.Contiguous();
        using var tc = TeacherRows(pb, tDetached);
        var grad = needGrad ? Tensor.Allocate(student.ShapeArray(), DType.Float32, zero: false, pb.Op) : null;
        var rowLoss = new double[n];
        RunRows(pb, 0, n, sc.Ptr<float>(), tc.Ptr<float>(), grad is null ? null : grad.Ptr<float>(), rowLoss);

        Tensor result;
        if (pb.Options.Reduction == Reduction.None)
        {
            using var flat = Tensor.FromArray(rowLoss.Select(x => (float)x).ToArray(), n);
            result = flat.Reshape(pb.RowsShape);
        }
        else
        {
            double total = 0;
            foreach (var x in rowLoss) total += x; // in row order: the result does not depend on the thread count
            result = Tensor.Scalar(total, DType.Float32);
        }
        if (grad is null) return result;

        var rowsShape = pb.RowsShape;
        Graph.Record(result, pb.Op, [student, teacher], [grad, student, teacher], (gOut, saved) =>
        {
            if (GradMode.IsEnabled) return Recompute(pb, saved[1], saved[2], gOut);
            var gs = saved[0];
            if (pb.Options.Reduction == Reduction.None)
            {
                using var column = gOut.Reshape([.. rowsShape, 1]);
                return [gs.Mul(column), null];
            }
            return [gOut.ToDouble() == 1 ? gs.Alias() : gs.Mul(gOut), null];
        });
        grad.Dispose(); // the node holds its own handle
        return result;
    }

    /// <summary>Elements per block of rows in <see cref="RunRows"/> (about 1 MB of each input).</summary>
    private const long BlockElements = 1 << 18;

    /// <summary>
    /// Rows [<paramref name="first"/>, first + count) of <paramref name="pb"/> (their options: temperature, ignore,
    /// coefficient, BD-KD weight), whose logits start at <paramref name="s"/> and <paramref name="t"/> (row-major,
    /// V per row), in parallel: the scaled row losses into rowLoss[first..] and, when <paramref name="g"/> is not
    /// null, the scaled gradient wrt s (g may equal s: each row is read fully before its gradient is written).
    /// </summary>
    internal static void RunRows(DivergenceProblem pb, long first, long count, float* s, float* t, float* g, double[] rowLoss)
    {
        int v = (int)pb.Classes;
        var kind = pb.Kind;
        bool teacherLogits = pb.Options.TeacherInput == TeacherInput.Logits;
        nint ps = (nint)s, pt = (nint)t, pg = (nint)g;
        // Contiguous blocks of rows, each run in order on one thread: FusedRows prefetches past a row's end into the
        // next row, which is then this thread's. Blocks of about BlockElements elements (8 rows of 32000 classes), so
        // threads that finish early take more and none waits long at the end; a row's result does not depend on its
        // block, so results do not depend on the thread count.
        long per = Math.Max(1, BlockElements / Math.Max(1, v)), blocks = (count + per - 1) / per;
        Parallelism.For(blocks, count * (long)v >= Parallelism.ElementwiseThreshold / 4, block =>
        {
            var w = t_workspace ??= new RowWorkspace();
            w.Ensure(v);
            long end = Math.Min(count, (block + 1) * per);
            for (long i = block * per; i < end; i++)
            {
                long r = first + i;
                float* gRow = pg == 0 ? null : (float*)pg + i * v;
                double coef = pb.LossCoefficient(r);
                if (coef == 0)
                {
                    // Ignored rows (and a reduction over nothing) contribute 0 and get a zero gradient,
                    // whatever their logits hold.
                    if (pg != 0) new Span<float>(gRow, v).Clear();
                    rowLoss[r] = 0;
                    continue;
                }
                double temperature = pb.TemperatureOf(r);
                var k = Constants(pb, r);
                float gcoef = (float)(coef / temperature), invT = (float)(1 / temperature);
                float* sRow = (float*)ps + i * v, tRow = (float*)pt + i * v;
                double d = kind switch
                {
                    DivergenceKind.ForwardKl => FusedRows.Run<ForwardKlElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    DivergenceKind.ReverseKl => FusedRows.Run<ReverseKlElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    DivergenceKind.Jsd => FusedRows.Run<JsdElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    DivergenceKind.TotalVariation => FusedRows.Run<TotalVariationElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    DivergenceKind.SkewKl => FusedRows.Run<SkewKlElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    DivergenceKind.SkewReverseKl => FusedRows.Run<SkewReverseKlElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    DivergenceKind.Alpha => FusedRows.Run<AlphaElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                    _ => FusedRows.Run<BdKdElement>(w, sRow, tRow, gRow, v, invT, teacherLogits, k, gcoef),
                };
                rowLoss[r] = coef * d;
            }
        });
    }

    /// <summary>createGraph backward: the composite form's gradient, recorded, so it can be differentiated again.</summary>
    private static Tensor?[] Recompute(DivergenceProblem pb, Tensor student, Tensor teacher, Tensor gOut)
    {
        using var loss = CompositeDivergence.Compute(pb, student, teacher);
        var grads = Autograd.Grad([loss], [student], [gOut], retainGraph: true, createGraph: true, allowUnused: true);
        return [grads[0], null];
    }

    /// <summary>The teacher rows the kernel reads: logits or log-probabilities as given (contiguous), probabilities as their log.</summary>
    private static Tensor TeacherRows(DivergenceProblem pb, Tensor teacher)
    {
        var c = teacher.Contiguous();
        if (pb.Options.TeacherInput != TeacherInput.Probabilities) return c;
        using (c)
        {
            var log = Tensor.Allocate(c.ShapeArray(), DType.Float32, zero: false, pb.Op);
            TensorPrimitives.Log(c.Span<float>(), log.Span<float>()); // log 0 = −∞: a class of probability 0
            return log;
        }
    }

    private static RowConstants Constants(DivergenceProblem pb, long row)
    {
        double x = pb.Param;
        return pb.Kind switch
        {
            DivergenceKind.Jsd => new RowConstants { A = (float)x, B = (float)(1 - x) },
            DivergenceKind.SkewKl => new RowConstants { A = (float)x, B = (float)(1 - x) },
            DivergenceKind.SkewReverseKl => new RowConstants { A = (float)(1 - x), B = (float)x },
            DivergenceKind.Alpha => new RowConstants { A = (float)x, B = (float)(1 - x), C = (float)(1 / (x * (1 - x))), D = (float)(-1 / x) },
            DivergenceKind.BdKd => new RowConstants { A = (float)pb.RowWeights![row], B = (float)(1 - pb.RowWeights[row]) },
            _ => default,
        };
    }
}
