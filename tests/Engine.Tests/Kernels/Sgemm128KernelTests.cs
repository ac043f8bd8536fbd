using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using static Engine.Tests.Kernels.KernelTestUtil;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Gemm Sgemm128 (128×128×8 tiles, 8×8 register tiles, Float4 staging, double-buffered shared
/// memory) on the emulator and OpenCL (PoCL) against a float64 reference and Engine.Tensors' CPU
/// a.MatMul(b): odd M, N, K (1, primes, one past a tile or a vector), K = 0, all four transpose
/// combinations, each of the four staging modes (asserted from the plan, so the vector paths really
/// run; the emulator faults on a misaligned Float4), padded rows with a K tail inside a vector,
/// misaligned and non-contiguous operands (scalar fallbacks), broadcast and full batches; then the
/// device dispatch (GemmPlan.Run from Tensor.MatMul on emulator/OpenCL tensors, forward and backward).
/// </summary>
public class Sgemm128KernelTests
{
    /// <summary>How an operand is stored.</summary>
    public enum Store
    {
        /// <summary>Contiguous (in its storage order).</summary>
        Dense,
        /// <summary>Rows of the storage padded to a multiple of 4 plus 4 floats (aligned, not contiguous).</summary>
        Padded,
        /// <summary>Contiguous but starting one float into its buffer (never 16-byte aligned).</summary>
        Offset1,
        /// <summary>Every other element of the last storage dim (no unit stride).</summary>
        Strided,
    }

    /// <summary>One product: logical shapes, transposed storage, storage kind and the staging modes the plan must pick.</summary>
    public sealed record Case(long[] A, long[] B, int ModeA, int ModeB, bool TransposeA = false, bool TransposeB = false, Store StoreA = Store.Dense, Store StoreB = Store.Dense)
    {
        public override string ToString()
            => $"{ShapeUtil.Format(A)}{(TransposeA ? "ᵀ" : "")}({StoreA})·{ShapeUtil.Format(B)}{(TransposeB ? "ᵀ" : "")}({StoreB})";
    }

    private const int K0 = GemmKernels.AlongK, O0 = GemmKernels.AlongOuter, K4 = GemmKernels.VectorAlongK, O4 = GemmKernels.VectorAlongOuter;

    // Modes: A's outer dim is M, B's is N; row-major A and transposed B have unit stride along K.
    private static readonly Case[] EmulatorCases =
    [
        new([1, 1], [1, 1], K0, K0),                                             // size-1 strides are 0: no unit stride
        new([7, 5], [5, 3], K0, O0),                                             // row strides 5 and 3: misaligned
        new([67, 24], [24, 72], K4, O4),                                         // both vector, N % 4 == 0 (Float4 stores of C)
        new([66, 24], [24, 70], K4, O0, TransposeA: false, TransposeB: false),   // C tail: N = 70 stored by scalars
        new([68, 21], [21, 72], O4, K0, TransposeA: true, TransposeB: true),     // Aᵀ along M, Bᵀ K-contiguous (stride 21)
        new([65, 21], [21, 67], K4, K4, StoreA: Store.Padded, TransposeB: true, StoreB: Store.Padded), // K tail inside a vector
        new([64, 16], [16, 131], O4, O0, TransposeA: true),                      // Aᵀ: M stride 1; N = 131 > 128: 2 groups
        new([70, 12], [12, 66], K0, O0, StoreA: Store.Offset1, StoreB: Store.Offset1), // misaligned: scalar
        new([66, 9], [9, 65], O0, O0, TransposeA: true, StoreA: Store.Strided, StoreB: Store.Strided), // no unit stride: along the smaller
        new([3, 70, 12], [12, 66], K4, O0),                                      // batch 3, B broadcast
        new([2, 65, 8], [1, 8, 68], O0, K4, TransposeA: true, TransposeB: true), // Aᵀ batch (M = 65: outer stride 1, K stride 65)
        new([70, 0], [0, 66], K0, O0),                                           // K = 0: C = 0
        new([130, 1], [1, 65], O4, O4),                                          // K = 1: k strides are 0; 2 groups in M
    ];

    private static readonly Case[] OpenCLCases =
    [
        .. EmulatorCases,
        new([257, 300], [300, 129], K4, O0),
        new([300, 256], [256, 260], K4, O4, TransposeB: false),
        new([129, 37], [37, 150], O0, K0, TransposeA: true, TransposeB: true),
        new([4, 130, 40], [4, 40, 150], K4, K4, TransposeB: true),
        new([200, 33], [33, 140], K0, O0, StoreA: Store.Strided, StoreB: Store.Offset1),
        new([256, 64], [64, 256], O4, O4, TransposeA: true),
    ];

    public static TheoryData<int> EmulatorIndices => new(Enumerable.Range(0, EmulatorCases.Length));

    /// <summary>An operand of logical shape <paramref name="shape"/> stored as asked (a transposed one stored the other way round).</summary>
    internal static Tensor Operand(Random rng, long[] shape, bool transpose, Store store)
    {
        var stored = (long[])shape.Clone();
        if (transpose) (stored[^1], stored[^2]) = (stored[^2], stored[^1]);
        Tensor x;
        switch (store)
        {
            case Store.Padded:
            {
                var wide = (long[])stored.Clone();
                wide[^1] = (stored[^1] + 3) / 4 * 4 + 4;
                using var big = TestUtil.Random(rng, wide, DType.Float32, -1, 1);
                x = big.Narrow(-1, 0, stored[^1]);
                break;
            }
            case Store.Offset1:
            {
                long n = ShapeUtil.NumEl(stored);
                using var flat = TestUtil.Random(rng, [n + 1], DType.Float32, -1, 1);
                using var tail = flat.Narrow(0, 1, n);
                x = tail.View(stored);
                break;
            }
            default:
                x = TestUtil.Random(rng, stored, DType.Float32, -1, 1);
                if (store == Store.Strided)
                {
                    var nc = TestUtil.NonContiguous(x);
                    x.Dispose();
                    x = nc;
                }
                break;
        }
        if (!transpose) return x;
        var t = x.Transpose(-1, -2);
        x.Dispose();
        return t;
    }

    /// <summary>float64 A·B with broadcast batches and the float32 accumulation bound (K + 2)·ε·Σ|a||b| per output.</summary>
    internal static (double[] Value, double[] Bound) Reference(Tensor a, Tensor b, int batch, int m, int n, int k)
    {
        double[] da = Doubles(a), db = Doubles(b);
        long batchA = a.Rank == 3 ? a.Shape[0] : 1, batchB = b.Rank == 3 ? b.Shape[0] : 1;
        var value = new double[batch * m * n];
        var bound = new double[value.Length];
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
            value[(p * m + i) * n + j] = sum;
            bound[(p * m + i) * n + j] = (k + 2) * 1.2e-7 * abs + 1e-30;
        }
        return (value, bound);
    }

    private static void Check(Case c, bool openCL)
    {
        var rng = new Random(TestUtil.StableSeed(c.ToString()));
        using var a = Operand(rng, c.A, c.TransposeA, c.StoreA);
        using var b = Operand(rng, c.B, c.TransposeB, c.StoreB);
        Assert.Equal(c.A, a.ShapeArray());
        Assert.Equal(c.B, b.ShapeArray());
        using var cpu = a.MatMul(b);
        var (layout, batch, shape) = GemmPlan.For(a, b);
        Assert.Equal(cpu.ShapeArray(), shape);
        Assert.True((c.ModeA, c.ModeB) == (layout.ModeA, layout.ModeB), $"{c}: plan picked modes ({layout.ModeA}, {layout.ModeB}), expected ({c.ModeA}, {c.ModeB})");
        var grid = GemmPlan.LargeGrid(layout, batch);
        float[] got;
        if (openCL)
        {
            got = new float[cpu.NumEl];
            if (grid.X > 0) KernelRunner.OpenCL.Run(GemmKernels.Launch.Sgemm128Source, grid, GemmPlan.LargeGroup, StorageArray(a), StorageArray(b), got, layout);
        }
        else
        {
            using var y = Tensor.Full(shape, float.NaN); // every output must be written
            if (grid.X > 0) GemmKernels.Launch.Sgemm128(Emulator, grid, GemmPlan.LargeGroup, StorageView(a), StorageView(b), View(y), layout);
            got = y.ToArray<float>();
        }
        var (reference, bound) = Reference(a, b, batch, layout.M, layout.N, layout.K);
        var cpuValues = cpu.ToArray<float>();
        string what = $"{c} {(openCL ? "OpenCL" : "emulator")}";
        for (int i = 0; i < reference.Length; i++)
        {
            Assert.True(Math.Abs(reference[i] - got[i]) <= bound[i], $"{what}[{i}]: float64 {reference[i]:R}, kernel {got[i]:R}, bound {bound[i]:G3}");
            Assert.True(Math.Abs(cpuValues[i] - got[i]) <= 2 * bound[i], $"{what}[{i}]: CPU {cpuValues[i]:R}, kernel {got[i]:R}, bound {bound[i]:G3}");
        }
    }

    [Theory]
    [MemberData(nameof(EmulatorIndices))]
    public void Sgemm128_Emulator_MatchesMatMulAndFloat64(int index) => Check(EmulatorCases[index], openCL: false);

    [BackendFact("opencl")]
    public void Sgemm128_OpenCL_MatchesMatMulAndFloat64()
    {
        foreach (var c in OpenCLCases) Check(c, openCL: true);
    }

    [Fact]
    public void Plan_PicksSgemm128AboveSixtyFour_AndItsGrid()
    {
        using var x = Tensor.Zeros([3, 130, 65]);
        using var w = Tensor.Zeros([65, 257]);
        var (layout, batch, _) = GemmPlan.For(x, w);
        Assert.True(GemmPlan.UsesLargeTiles(layout));
        Assert.Equal(new Dim3(3, 2, 3), GemmPlan.LargeGrid(layout, batch));
        Assert.Equal(new Dim3(256), GemmPlan.LargeGroup);
        using var narrow = Tensor.Zeros([65, 64]);
        Assert.False(GemmPlan.UsesLargeTiles(GemmPlan.For(x, narrow).Layout)); // N = 64: the 64×64 kernel
        using var low = Tensor.Zeros([64, 65]);
        Assert.False(GemmPlan.UsesLargeTiles(GemmPlan.For(low, w).Layout));
    }

    [Theory]
    [InlineData(0, 0, 24, 1, GemmKernels.VectorAlongK)]     // row-major, row stride 24
    [InlineData(8, 96, 24, 1, GemmKernels.VectorAlongK)]    // aligned offset and batch stride
    [InlineData(2, 0, 24, 1, GemmKernels.AlongK)]           // offset 2: 8 bytes off
    [InlineData(0, 6, 24, 1, GemmKernels.AlongK)]           // batch stride 6: batch 1 misaligned
    [InlineData(0, 0, 21, 1, GemmKernels.AlongK)]           // row stride 21
    [InlineData(0, 0, 1, 40, GemmKernels.VectorAlongOuter)] // transposed
    [InlineData(0, 0, 1, 42, GemmKernels.AlongOuter)]
    [InlineData(0, 0, 2, 80, GemmKernels.AlongOuter)]       // strided: along the smaller stride
    [InlineData(0, 0, 80, 2, GemmKernels.AlongK)]
    public void Plan_Mode_VectorOnlyWhenEveryAddressIsAligned(int offset, int batchStride, int outerStride, int kStride, int expected)
        => Assert.Equal(expected, GemmPlan.Mode(offset, batchStride, outerStride: outerStride, kStride: kStride));

    /// <summary>
    /// What the header promises, from NVRTC's own output: ≤ 128 registers (two groups of 256 per SM), no
    /// stack frame or spills (the 64 accumulators live in registers), and in the PTX the 16-byte vector
    /// instructions (shared and global loads, global stores of C) and all 8·8·8 = 512 FMAs of a k-step
    /// unrolled, with no local-memory access.
    /// </summary>
    [BackendTheory("nvrtc")]
    [InlineData(70)]
    [InlineData(80)]
    [InlineData(90)]
    public void Sgemm128_Nvrtc_RegistersVectorsAndUnrolledFmas(int arch)
    {
        var kernel = GemmKernels.Launch.Sgemm128Source;
        var module = Engine.Runtime.Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: "Sgemm128.cu");
        var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint);
        Assert.True(usage.Registers <= 128 && usage.StackFrameBytes == 0 && usage.SpillBytes == 0, usage.ToString());
        string ptx = Engine.Runtime.Nvrtc.CompileToPtx(kernel.CudaSource, $"sm_{arch}", programName: "Sgemm128.cu");
        Assert.Contains("ld.shared.v4.f32", ptx);
        Assert.Contains("st.shared.v4.f32", ptx);
        Assert.Matches(@"ld\.global(\.nc)?\.v4\.f32", ptx);
        Assert.Contains("st.global.v4.f32", ptx);
        Assert.DoesNotContain(".local", ptx);
        int fmas = System.Text.RegularExpressions.Regex.Matches(ptx, @"\bfma\.rn\.f32\b").Count;
        Assert.True(fmas >= 512, $"sm_{arch}: {fmas} fma.rn.f32 in the PTX, expected the 512 of an unrolled k-step");
    }

    // ---------------------------------------------------------------- dispatch (Tensor.MatMul on a device)

    /// <summary>
    /// <paramref name="x"/> on <paramref name="device"/> with a device layout like the CPU operand's: the
    /// transposed storage (a transpose of a contiguous [.., K, M]) and/or every other element of the last
    /// storage dim, so the dispatch sees the same strides.
    /// </summary>
    private static Tensor OnDevice(Tensor x, Device device, bool transpose, bool strided)
    {
        using var _ = Tensor.NoGrad();
        using var moved = x.To(device);
        using var stored = transpose ? moved.Transpose(-1, -2) : moved.Alias();
        Tensor layout;
        if (strided)
        {
            var shape = stored.ShapeArray();
            shape[^1] *= 2;
            using var big = Tensor.Zeros(shape, DType.Float32, device);
            layout = big.Slice(-1, 0, shape[^1], 2);
            layout.CopyFrom_(stored);
        }
        else layout = stored.Contiguous();
        if (!transpose) return layout;
        using (layout) return layout.Transpose(-1, -2);
    }

    private static void DispatchMatches(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("sgemm128 dispatch"));
        var cases = new (long[] A, long[] B, bool TransposeA, bool TransposeB, bool Strided)[]
        {
            ([68, 32], [32, 72], false, false, false),      // both Float4 modes, Float4 stores of C
            ([72, 16], [16, 68], true, true, false),        // transposed and aligned: Float4 along M and K
            ([70, 33], [33, 66], false, false, false),      // scalar modes (strides 33, 66)
            ([67, 9], [9, 130], true, false, true),
            ([2, 65, 12], [12, 69], false, true, false),
            ([2, 1, 66, 5], [2, 5, 67], true, true, false), // rank 4: batch dims flattened
        };
        foreach (var (sa, sb, ta, tb, strided) in cases)
        {
            using var a0 = Operand(rng, sa, ta, strided ? Store.Strided : Store.Dense);
            using var b0 = Operand(rng, sb, tb, Store.Dense);
            using var a = a0.Detach().RequiresGrad_();
            using var b = b0.Detach().RequiresGrad_();
            using var da0 = OnDevice(a, device, ta, strided);
            using var da = da0.Detach().RequiresGrad_();
            Assert.Equal(ta || strided, !da.IsContiguous);
            using var db = b.To(device).Detach().RequiresGrad_();
            string what = $"{device} matmul {ShapeUtil.Format(sa)}{(ta ? "ᵀ" : "")}·{ShapeUtil.Format(sb)}{(tb ? "ᵀ" : "")}";
            using (var a2 = a.Reshape(-1, sa[^2], sa[^1]))
                Assert.True(GemmPlan.UsesLargeTiles(GemmPlan.For(a2, b).Layout), what + " should run Sgemm128");
            using var y = a.MatMul(b);
            using var dy = da.MatMul(db);
            Assert.Equal(device, dy.Device);
            using (var host = dy.To(Device.Cpu)) TestUtil.AssertClose(y.ToArray<float>().Select(v => (double)v).ToArray(), host, 1e-4, 1e-4, what);
            using var w = TestUtil.Random(rng, y.ShapeArray());
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            using (var g = da.Grad!.To(Device.Cpu)) TestUtil.AssertClose(a.Grad!.ToArray<float>().Select(v => (double)v).ToArray(), g, 1e-4, 1e-4, what + " dA");
            using (var g = db.Grad!.To(Device.Cpu)) TestUtil.AssertClose(b.Grad!.ToArray<float>().Select(v => (double)v).ToArray(), g, 1e-4, 1e-4, what + " dB");
        }
    }

    [Fact]
    public void Dispatch_Emulator_MatMulAndGradients_MatchCpu() => DispatchMatches(Device.Parse("emulator"));

    [BackendFact("opencl")]
    public void Dispatch_OpenCL_MatMulAndGradients_MatchCpu() => DispatchMatches(Device.Parse("opencl:0"));

    /// <summary>The same on a real GPU (skipped without one): the Float4 paths meet CUDA's alignment rules there.</summary>
    [BackendFact("cuda")]
    public void Dispatch_Cuda_MatMulAndGradients_MatchCpu() => DispatchMatches(Device.Parse("cuda:0"));
}
