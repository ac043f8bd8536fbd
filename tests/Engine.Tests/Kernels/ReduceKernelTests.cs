using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using static Engine.Tests.Kernels.KernelTestUtil;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Reduce on the emulator and on OpenCL (PoCL): sum and max along one dim equal
/// Engine.Tensors' x.Sum(dim) / x.Max(dim) and a float64 reference, for rows (inner = 1) and columns
/// (inner &gt; 1), with lengths that are not multiples of the group, an empty reduced dim (sum) and NaN (max).
/// </summary>
public class ReduceKernelTests
{
    // [outer, n, inner]: n below, at and above the group; inner 1, below and above 32 columns.
    private static readonly long[][] EmulatorShapes =
        [[1, 1, 1], [3, 7, 1], [2, 300, 1], [1, 33, 1], [4, 33, 5], [2, 9, 70], [3, 0, 1], [0, 4, 3], [2, 0, 3]];

    private static readonly long[][] OpenCLShapes = [.. EmulatorShapes, [64, 5000, 1], [5, 100_003, 1], [8, 500, 300], [3, 4, 1031]];

    private static void Check(long[] shape, bool max, bool openCL)
    {
        string op = max ? "max" : "sum";
        if (max && shape[1] == 0) return; // an error on the CPU and in the plan (tested below)
        var rng = new Random(TestUtil.StableSeed(op + ShapeUtil.Format(shape)));
        var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), -2, 2);
        if (max && values.Length > 20) values[values.Length / 2] = double.NaN; // NaN propagates to its output
        using var x = TestUtil.FromDoubles(values, shape);
        using var cpu = max ? x.Max(1) : x.Sum(1);
        long outer = shape[0], n = shape[1], inner = shape[2];
        var xs = Doubles(x);
        var reference = new double[outer * inner];
        var bound = new double[outer * inner];
        for (long o = 0; o < outer; o++)
        for (long i = 0; i < inner; i++)
        {
            double acc = max ? double.NegativeInfinity : 0, abs = 0;
            for (long j = 0; j < n; j++)
            {
                double v = xs[(o * n + j) * inner + i];
                acc = max ? (double.IsNaN(v) || double.IsNaN(acc) ? double.NaN : Math.Max(acc, v)) : acc + v;
                abs += Math.Abs(v);
            }
            reference[o * inner + i] = acc;
            // float accumulation: ⌈n/G⌉ sequential adds per thread then a tree (see ReduceKernels.cs)
            bound[o * inner + i] = (n / 8.0 + 16) * 6e-8 * abs + 1e-7;
        }
        var launch = ReducePlan.For(outer, n, inner, op);
        float[] got;
        if (openCL)
        {
            got = new float[outer * inner];
            var source = (launch.Columns, max) switch
            {
                (false, false) => ReduceKernels.Launch.ReduceRows__SumReduceSource,
                (false, true) => ReduceKernels.Launch.ReduceRows__MaxReduceSource,
                (true, false) => ReduceKernels.Launch.ReduceColumns__SumReduceSource,
                (true, true) => ReduceKernels.Launch.ReduceColumns__MaxReduceSource,
            };
            if (launch.HasWork)
            {
                if (launch.Columns) KernelRunner.OpenCL.Run(source, launch.Grid, launch.Group, StorageArray(x), got, launch.N, launch.Inner);
                else KernelRunner.OpenCL.Run(source, launch.Grid, launch.Group, StorageArray(x), got, launch.N);
            }
        }
        else
        {
            using var y = Tensor.Zeros([outer, inner]);
            if (launch.HasWork)
            {
                ArrayView<float> xv = StorageView(x), yv = View(y);
                switch (launch.Columns, max)
                {
                    case (false, false): ReduceKernels.Launch.ReduceRows__SumReduce(Emulator, launch.Grid, launch.Group, xv, yv, launch.N); break;
                    case (false, true): ReduceKernels.Launch.ReduceRows__MaxReduce(Emulator, launch.Grid, launch.Group, xv, yv, launch.N); break;
                    case (true, false): ReduceKernels.Launch.ReduceColumns__SumReduce(Emulator, launch.Grid, launch.Group, xv, yv, launch.N, launch.Inner); break;
                    case (true, true): ReduceKernels.Launch.ReduceColumns__MaxReduce(Emulator, launch.Grid, launch.Group, xv, yv, launch.N, launch.Inner); break;
                }
            }
            got = y.ToArray<float>();
        }
        string what = $"{op} {ShapeUtil.Format(shape)} {(openCL ? "OpenCL" : "emulator")}";
        var cpuValues = cpu.ToArray<float>();
        for (int k = 0; k < reference.Length; k++)
        {
            if (max)
            {
                // max is exact: the same float as the CPU op and the reference (NaN included)
                Assert.True(cpuValues[k].Equals(got[k]), $"{what}[{k}]: CPU {cpuValues[k]}, kernel {got[k]}");
                Assert.True(((float)reference[k]).Equals(got[k]), $"{what}[{k}]: float64 {reference[k]}, kernel {got[k]}");
            }
            else
            {
                Assert.True(Math.Abs(reference[k] - got[k]) <= bound[k], $"{what}[{k}]: float64 {reference[k]}, kernel {got[k]}, bound {bound[k]}");
                Assert.True(Math.Abs(cpuValues[k] - got[k]) <= 2 * bound[k], $"{what}[{k}]: CPU {cpuValues[k]}, kernel {got[k]}, bound {bound[k]}");
            }
        }
    }

    [Fact]
    public void SumAndMax_Emulator_MatchCpuOpAndFloat64()
    {
        foreach (var shape in EmulatorShapes)
        {
            Check(shape, max: false, openCL: false);
            Check(shape, max: true, openCL: false);
        }
    }

    [BackendFact("opencl")]
    public void SumAndMax_OpenCL_MatchCpuOpAndFloat64()
    {
        foreach (var shape in OpenCLShapes)
        {
            Check(shape, max: false, openCL: true);
            Check(shape, max: true, openCL: true);
        }
    }

    [BackendFact("opencl")]
    public void RowsAndColumns_OpenCL_SameBitsOnEveryLaunch()
    {
        // A race between the group's threads (e.g. a missing barrier) shows as launches that disagree.
        var rng = new Random(TestUtil.StableSeed("reduce-repeat"));
        var x = TestUtil.RandomValues(rng, 64 * 5000, -2, 2).Select(v => (float)v).ToArray();
        var rows = ReducePlan.For(64, 5000, 1, "sum");
        var columns = ReducePlan.For(1, 64, 5000, "sum");
        float[]? firstRows = null, firstColumns = null;
        for (int launch = 0; launch < 20; launch++)
        {
            var yr = new float[64];
            KernelRunner.OpenCL.Run(ReduceKernels.Launch.ReduceRows__SumReduceSource, rows.Grid, rows.Group, x, yr, rows.N);
            var yc = new float[5000];
            KernelRunner.OpenCL.Run(ReduceKernels.Launch.ReduceColumns__SumReduceSource, columns.Grid, columns.Group, x, yc, columns.N, columns.Inner);
            firstRows ??= yr;
            firstColumns ??= yc;
            Assert.Equal(firstRows, yr);
            Assert.Equal(firstColumns, yc);
        }
    }

    [Fact]
    public void Plan_MapsDimToOuterNInner_AndPicksTheKernel()
    {
        var rows = ReducePlan.Along([4, 5, 70], 2, "sum");
        Assert.False(rows.Columns);
        Assert.Equal((20, 70, 1), (rows.Outer, rows.N, rows.Inner));
        Assert.Equal(new Dim3(20), rows.Grid);
        Assert.Equal(new Dim3(128), rows.Group); // 70 rounded up to a power of two

        var columns = ReducePlan.Along([4, 5, 70], 1, "sum");
        Assert.True(columns.Columns);
        Assert.Equal((4, 5, 70), (columns.Outer, columns.N, columns.Inner));
        Assert.Equal(new Dim3(4 * 3), columns.Grid);
        Assert.Equal(new Dim3(32, 8), columns.Group);

        Assert.Equal(new Dim3(ReduceKernels.MaxRowGroup), ReducePlan.For(1, 100_000, 1, "sum").Group);
    }

    [Fact]
    public void Plan_MaxOverEmptyDim_IsAnError()
    {
        var e = Assert.Throws<ArgumentException>(() => ReducePlan.For(3, 0, 1, "max"));
        Assert.Contains("max kernel", e.Message);
    }
}
