using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using static Engine.Tests.Kernels.KernelTestUtil;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Softmax on the emulator and on OpenCL (PoCL): softmax and log-softmax with temperature,
/// forward (vs x.Softmax(-1, T) / x.LogSoftmax(-1, T) and float64) and backward (vs the CPU autograd
/// gradient and the float64 formula on the same saved output), for T from 0.05 to 20, inputs at
/// ±1e4, rows that are not multiples of the group, −∞ entries and all −∞ rows.
/// </summary>
public class SoftmaxKernelTests
{
    // The emulator runs one OS thread per GPU thread: small launches there, the large ones on OpenCL.
    private static readonly (long Rows, long N)[] EmulatorShapes = [(1, 1), (3, 7), (2, 300), (2, 33), (0, 5)];
    private static readonly (long Rows, long N)[] OpenCLShapes = [.. EmulatorShapes, (64, 1000), (3, 20_001)];
    private static readonly double[] Temperatures = [0.05, 1, 20];

    private enum Kind { Forward, Backward }

    private static (double[] X, string Label)[] Inputs(Random rng, long rows, long n)
    {
        long count = rows * n;
        var wide = TestUtil.RandomValues(rng, count, -1e4, 1e4);
        var narrow = TestUtil.RandomValues(rng, count, -3, 3);
        var special = TestUtil.RandomValues(rng, count, -5, 5);
        if (rows >= 2 && n >= 2)
        {
            special[1] = double.NegativeInfinity; // one −∞ entry: probability 0 (log: −∞)
            for (long j = 0; j < n; j++) special[n + j] = double.NegativeInfinity; // an all −∞ row: NaN
        }
        return [(wide, "±1e4"), (narrow, "±3"), (special, "−∞")];
    }

    private static void Check(long rows, long n, double temperature, bool log, bool openCL)
    {
        // The emulator runs groups of at most 64 threads (any power of two is correct; rows longer
        // than the group take the strided path), OpenCL the plan's own choice.
        string op = log ? "log_softmax" : "softmax";
        var rng = new Random(TestUtil.StableSeed($"{op}{rows}x{n}T{temperature}"));
        var (grid, group) = SoftmaxPlan.For(rows, n, openCL ? SoftmaxKernels.MaxGroup : 64);
        float invT = SoftmaxPlan.InverseTemperature(temperature);
        foreach (var (values, label) in Inputs(rng, rows, n))
        {
            string what = $"{op} [{rows}, {n}] T={temperature} {label} {(openCL ? "OpenCL" : "emulator")}";
            using var x = TestUtil.FromDoubles(values, [rows, n]);
            x.RequiresGrad_();
            using var cpuY = log ? x.LogSoftmax(-1, temperature) : x.Softmax(-1, temperature);
            using var g = TestUtil.Random(rng, [rows, n], DType.Float32, -1, 1);
            cpuY.Backward(g);
            float[] xf = x.ToArray<float>(), yf = cpuY.ToArray<float>(), gf = g.ToArray<float>(), cpuDx = x.Grad!.ToArray<float>();

            // Forward: float64 reference from the float32 inputs.
            var refY = new double[rows * n];
            var fwdTol = new double[rows * n];
            for (long r = 0; r < rows; r++)
            {
                double m = double.NegativeInfinity;
                for (long j = 0; j < n; j++) m = Math.Max(m, xf[r * n + j]);
                double s = 0;
                for (long j = 0; j < n; j++) s += Math.Exp((xf[r * n + j] - m) / temperature);
                for (long j = 0; j < n; j++)
                {
                    double z = (xf[r * n + j] - m) / temperature;
                    refY[r * n + j] = log ? z - Math.Log(s) : Math.Exp(z) / s;
                    // z carries ~2ε relative error (rounding of x − m and of ·1/T): exp(z) then errs by |z|·2ε.
                    fwdTol[r * n + j] = log ? 1e-6 + 4e-7 * (Math.Abs(z) + Math.Log(n) + 1) : 1e-7 + 4e-7 * (Math.Min(Math.Abs(z), 120) + Math.Log(n) + 4) * Math.Exp(z) / s;
                }
            }
            var gotY = Run(Kind.Forward, log, openCL, grid, group, xf, null, (int)n, invT);
            AssertWithin(refY, gotY, fwdTol, what + " forward vs float64");
            AssertWithin(yf.Select(v => (double)v).ToArray(), gotY, fwdTol.Select(t => 2 * t).ToArray(), what + " forward vs CPU op");

            // Backward from the CPU's saved output y and the same g.
            var refDx = new double[rows * n];
            var bwdTol = new double[rows * n];
            for (long r = 0; r < rows; r++)
            {
                double dot = 0, abs = 0;
                for (long j = 0; j < n; j++)
                {
                    double y = yf[r * n + j], gg = gf[r * n + j];
                    dot += log ? gg : gg * y;
                    abs += log ? Math.Abs(gg) : Math.Abs(gg * y);
                }
                for (long j = 0; j < n; j++)
                {
                    double y = yf[r * n + j], gg = gf[r * n + j];
                    refDx[r * n + j] = log ? (gg - Math.Exp(y) * dot) / temperature : y * (gg - dot) / temperature;
                    double scale = log ? Math.Abs(gg) + Math.Exp(y) * abs : Math.Abs(y) * (Math.Abs(gg) + abs);
                    bwdTol[r * n + j] = 1e-6 * scale / temperature + 1e-30;
                }
            }
            var gotDx = Run(Kind.Backward, log, openCL, grid, group, yf, gf, (int)n, invT);
            AssertWithin(refDx, gotDx, bwdTol, what + " backward vs float64");
            AssertWithin(cpuDx.Select(v => (double)v).ToArray(), gotDx, bwdTol.Select(t => 2 * t).ToArray(), what + " backward vs CPU autograd");
        }
    }

    private static void AssertWithin(double[] expected, float[] got, double[] tolerance, string what)
    {
        Assert.Equal(expected.Length, got.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = got[i];
            if (double.IsNaN(e) ? double.IsNaN(a) : e == a) continue;
            Assert.True(Math.Abs(e - a) <= tolerance[i], $"{what}[{i}]: expected {e:R}, got {a:R} (tolerance {tolerance[i]:G3})");
        }
    }

    private static float[] Run(Kind kind, bool log, bool openCL, Dim3 grid, Dim3 group, float[] a, float[]? b, int n, float invT)
    {
        var result = new float[a.Length];
        if (grid.X == 0) return result;
        if (openCL)
        {
            var source = (kind, log) switch
            {
                (Kind.Forward, false) => SoftmaxKernels.Launch.SoftmaxForwardSource,
                (Kind.Forward, true) => SoftmaxKernels.Launch.LogSoftmaxForwardSource,
                (Kind.Backward, false) => SoftmaxKernels.Launch.SoftmaxBackwardSource,
                _ => SoftmaxKernels.Launch.LogSoftmaxBackwardSource,
            };
            if (kind == Kind.Forward) KernelRunner.OpenCL.Run(source, grid, group, a, result, n, invT);
            else KernelRunner.OpenCL.Run(source, grid, group, a, b!, result, n, invT);
            return result;
        }
        using var ta = Tensor.FromArray(a, [a.Length]);
        using var tb = Tensor.FromArray(b ?? [], [b?.Length ?? 0]);
        using var y = Tensor.Zeros([a.Length]);
        switch (kind, log)
        {
            case (Kind.Forward, false): SoftmaxKernels.Launch.SoftmaxForward(Emulator, grid, group, View(ta), View(y), n, invT); break;
            case (Kind.Forward, true): SoftmaxKernels.Launch.LogSoftmaxForward(Emulator, grid, group, View(ta), View(y), n, invT); break;
            case (Kind.Backward, false): SoftmaxKernels.Launch.SoftmaxBackward(Emulator, grid, group, View(ta), View(tb), View(y), n, invT); break;
            default: SoftmaxKernels.Launch.LogSoftmaxBackward(Emulator, grid, group, View(ta), View(tb), View(y), n, invT); break;
        }
        return y.ToArray<float>();
    }

    [Fact]
    public void SoftmaxAndLogSoftmax_Emulator_ForwardAndBackward_MatchCpuAndFloat64()
    {
        foreach (var (rows, n) in EmulatorShapes)
        foreach (var temperature in new[] { 0.05, 20 }) // the extremes; T = 1 runs on OpenCL
        {
            Check(rows, n, temperature, log: false, openCL: false);
            Check(rows, n, temperature, log: true, openCL: false);
        }
    }

    [BackendFact("opencl")]
    public void SoftmaxAndLogSoftmax_OpenCL_ForwardAndBackward_MatchCpuAndFloat64()
    {
        foreach (var (rows, n) in OpenCLShapes)
        foreach (var temperature in Temperatures)
        {
            Check(rows, n, temperature, log: false, openCL: true);
            Check(rows, n, temperature, log: true, openCL: true);
        }
    }

    [Fact]
    public void Plan_GroupIsAPowerOfTwoSizedToTheRow()
    {
        Assert.Equal((new Dim3(5), new Dim3(32)), SoftmaxPlan.For(5, 7));
        Assert.Equal((new Dim3(2), new Dim3(128)), SoftmaxPlan.For(2, 100));
        Assert.Equal((new Dim3(2), new Dim3(SoftmaxKernels.MaxGroup)), SoftmaxPlan.For(2, 100_000));
        Assert.Equal((new Dim3(2), new Dim3(64)), SoftmaxPlan.For(2, 100_000, 64));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SoftmaxPlan.InverseTemperature(0));
        Assert.Contains("softmax kernel", e.Message);
    }
}
