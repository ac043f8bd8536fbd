using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using static Engine.Tests.Kernels.KernelTestUtil;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Gemm on the emulator and on OpenCL (PoCL): C = A·B equals Engine.Tensors' a.MatMul(b) and a
/// float64 reference for M, N, K that are not multiples of the 64×64×16 tiles, K = 0, transposed
/// operands (strides), non-contiguous views and broadcast batches.
/// </summary>
public class GemmKernelTests
{
    private sealed record Case(long[] A, long[] B, bool TransposeA = false, bool TransposeB = false, bool Strided = false)
    {
        public override string ToString()
            => $"{ShapeUtil.Format(A)}{(TransposeA ? "ᵀ" : "")}·{ShapeUtil.Format(B)}{(TransposeB ? "ᵀ" : "")}{(Strided ? " strided" : "")}";
    }

    // Shapes are the logical operand shapes; a transposed operand is stored the other way round.
    private static readonly Case[] EmulatorCases =
    [
        new([1, 1], [1, 1]), new([7, 5], [5, 3]), new([33, 17], [17, 65]), new([5, 0], [0, 4]),
        new([20, 9], [9, 12], TransposeA: true), new([6, 19], [19, 70], TransposeB: true, Strided: true),
        new([3, 10, 7], [7, 9]), new([2, 5, 4], [1, 4, 6], TransposeA: true, TransposeB: true),
    ];

    private static readonly Case[] OpenCLCases =
    [
        .. EmulatorCases, new([64, 64], [64, 64]), new([130, 129], [129, 67], TransposeA: true, Strided: true),
        new([4, 100, 37], [4, 37, 150], TransposeB: true), new([257, 300], [300, 65]),
    ];

    private static Tensor Operand(Random rng, long[] shape, bool transpose, bool strided)
    {
        var stored = (long[])shape.Clone();
        if (transpose) (stored[^1], stored[^2]) = (stored[^2], stored[^1]);
        var x = TestUtil.Random(rng, stored, DType.Float32, -1, 1);
        if (strided)
        {
            var nc = TestUtil.NonContiguous(x);
            x.Dispose();
            x = nc;
        }
        if (!transpose) return x;
        var t = x.Transpose(-1, -2);
        x.Dispose();
        return t;
    }

    private static void Check(Case c, bool openCL)
    {
        var rng = new Random(TestUtil.StableSeed(c.ToString()));
        using var a = Operand(rng, c.A, c.TransposeA, c.Strided);
        using var b = Operand(rng, c.B, c.TransposeB, c.Strided);
        Assert.Equal(c.A, a.ShapeArray());
        using var cpu = a.MatMul(b);
        var (layout, batch, shape) = GemmPlan.For(a, b);
        Assert.Equal(cpu.ShapeArray(), shape);
        var grid = GemmPlan.Grid(layout, batch);
        float[] got;
        if (openCL)
        {
            got = new float[cpu.NumEl];
            if (grid.X > 0) KernelRunner.OpenCL.Run(GemmKernels.Launch.SgemmSource, grid, GemmPlan.Group, StorageArray(a), StorageArray(b), got, layout);
        }
        else
        {
            using var y = Tensor.Zeros(shape);
            if (grid.X > 0) GemmKernels.Launch.Sgemm(Emulator, grid, GemmPlan.Group, StorageView(a), StorageView(b), View(y), layout);
            got = y.ToArray<float>();
        }

        // float64 reference with the broadcast batch, and the float32 accumulation bound K·ε·Σ|a||b|.
        double[] da = Doubles(a), db = Doubles(b);
        int m = layout.M, n = layout.N, k = layout.K;
        long batchA = a.Rank == 3 ? a.Shape[0] : 1, batchB = b.Rank == 3 ? b.Shape[0] : 1;
        var reference = new double[cpu.NumEl];
        var bound = new double[cpu.NumEl];
        for (int p = 0; p < batch; p++)
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double sum = 0, abs = 0;
            for (int q = 0; q < k; q++)
            {
                double product = da[(batchA == 1 ? 0 : p) * m * k + i * k + q] * db[(batchB == 1 ? 0 : p) * k * n + q * n + j];
                sum += product;
                abs += Math.Abs(product);
            }
            reference[(p * m + i) * n + j] = sum;
            bound[(p * m + i) * n + j] = (k + 2) * 1.2e-7 * abs + 1e-30;
        }
        var cpuValues = cpu.ToArray<float>();
        string what = $"{c} {(openCL ? "OpenCL" : "emulator")}";
        for (int i = 0; i < reference.Length; i++)
        {
            Assert.True(Math.Abs(reference[i] - got[i]) <= bound[i], $"{what}[{i}]: float64 {reference[i]:R}, kernel {got[i]:R}, bound {bound[i]:G3}");
            Assert.True(Math.Abs(cpuValues[i] - got[i]) <= 2 * bound[i], $"{what}[{i}]: CPU {cpuValues[i]:R}, kernel {got[i]:R}, bound {bound[i]:G3}");
        }
    }

    [Fact]
    public void Sgemm_Emulator_MatchesMatMulAndFloat64()
    {
        foreach (var c in EmulatorCases) Check(c, openCL: false);
    }

    [BackendFact("opencl")]
    public void Sgemm_OpenCL_MatchesMatMulAndFloat64()
    {
        foreach (var c in OpenCLCases) Check(c, openCL: true);
    }

    [Fact]
    public void Plan_TransposeIsStrides_BatchBroadcastIsStrideZero()
    {
        using var x = Tensor.Zeros([2, 7, 5]);
        using var w = Tensor.Zeros([3, 5]);
        using var wt = w.Transpose(0, 1); // [5, 3] with strides [1, 5]
        var (layout, batch, shape) = GemmPlan.For(x, wt);
        Assert.Equal(2, batch);
        Assert.Equal([2L, 7, 3], shape);
        Assert.Equal((7, 3, 5), (layout.M, layout.N, layout.K));
        Assert.Equal((35, 5, 1), (layout.BatchStrideA, layout.RowStrideA, layout.ColStrideA));
        Assert.Equal((0, 1, 5), (layout.BatchStrideB, layout.RowStrideB, layout.ColStrideB));
        Assert.Equal(new Dim3(1, 1, 2), GemmPlan.Grid(layout, batch));
    }

    [Fact]
    public void Plan_MismatchedInnerDims_IsAnErrorNamingTheShapes()
    {
        using var a = Tensor.Zeros([4, 5]);
        using var b = Tensor.Zeros([6, 3]);
        var e = Assert.Throws<ArgumentException>(() => GemmPlan.For(a, b));
        Assert.Contains("sgemm kernel", e.Message);
        Assert.Contains("[4, 5]", e.Message);
    }
}
