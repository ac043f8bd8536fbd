using Engine.Runtime;
using Engine.Runtime.Kernels;
using Engine.Tests.KernelCompiler.TestShims;

namespace Engine.Tests.KernelCompiler;

/// <summary>
/// The translator's output, run: each sample kernel (SampleKernels.cs) runs on the emulator (the C#
/// itself) and as generated OpenCL C on PoCL, and both are compared with a plain C# reference
/// (float64 where it accumulates); every generated CUDA source compiles with NVRTC for sm_70/80/90
/// with zero spill bytes.
/// </summary>
public unsafe class KernelEndToEndTests
{
    private static readonly EmulatorAccelerator Emulator = new();

    private sealed class EmuArray : IDisposable
    {
        private readonly CpuBuffer _buffer;

        public EmuArray(float[] values)
        {
            _buffer = Emulator.Allocate(Math.Max(1, values.Length) * sizeof(float));
            View = new ArrayView<float>((float*)_buffer.Pointer, values.Length);
            values.AsSpan().CopyTo(new Span<float>(_buffer.Pointer, values.Length));
        }

        public ArrayView<float> View { get; }
        public float[] ToArray() => new Span<float>((void*)View.Pointer, (int)View.Length).ToArray();
        public void Dispose() => _buffer.Dispose();
    }

    private static float[] Random(int n, int seed, float scale = 4f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
    }

    private static void Close(double expected, float actual, double tolerance, string what)
        => Assert.True(Math.Abs(expected - actual) <= tolerance * (1 + Math.Abs(expected)), $"{what}: expected {expected}, got {actual}");

    [BackendFact("opencl")]
    public void VectorAdd_EmulatorAndPoCL_MatchReference()
    {
        const int n = 77, group = 32, grid = (n + group - 1) / group;
        float[] a = Random(n, 1), b = Random(n, 2);
        using var ea = new EmuArray(a);
        using var eb = new EmuArray(b);
        using var ey = new EmuArray(new float[n]);
        SampleKernels.Launch.VectorAdd(Emulator, grid, group, ea.View, eb.View, ey.View);
        var cl = new float[n];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.VectorAddSource.OpenCLSource, "VectorAdd", (grid, 1), (group, 1), a, b, cl);
        var emu = ey.ToArray();
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(a[i] + b[i], emu[i]);
            Assert.Equal(a[i] + b[i], cl[i]);
        }
    }

    [BackendFact("opencl")]
    public void BlockSum_SharedMemoryAndBarriers_MatchReference()
    {
        const int n = 200, group = SampleKernels.ReduceGroup, grid = (n + group - 1) / group;
        var x = Random(n, 3);
        using var ex = new EmuArray(x);
        using var es = new EmuArray(new float[grid]);
        SampleKernels.Launch.BlockSum(Emulator, grid, group, ex.View, es.View);
        var cl = new float[grid];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.BlockSumSource.OpenCLSource, "BlockSum", (grid, 1), (group, 1), x, cl);
        var emu = es.ToArray();
        for (int g = 0; g < grid; g++)
        {
            double reference = 0;
            for (int i = g * group; i < Math.Min(n, (g + 1) * group); i++) reference += x[i];
            Close(reference, emu[g], 1e-5, $"emulator group {g}");
            Close(reference, cl[g], 1e-5, $"OpenCL group {g}");
            Assert.Equal(emu[g], cl[g]); // same tree order, same float result
        }
    }

    [BackendFact("opencl")]
    public void KernelFunction_Softplus_MatchesReference()
    {
        const int n = 100, group = 32, grid = (n + group - 1) / group;
        var x = Random(n, 4, 30f);
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[n]);
        SampleKernels.Launch.SoftplusScaled(Emulator, grid, group, ex.View, ey.View, 0.5f);
        var cl = new float[n];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.SoftplusScaledSource.OpenCLSource, "SoftplusScaled", (grid, 1), (group, 1), x, cl, 0.5f);
        var emu = ey.ToArray();
        for (int i = 0; i < n; i++)
        {
            double reference = 0.5 * (x[i] > 20 ? x[i] : Math.Log(1 + Math.Exp(x[i])));
            Close(reference, emu[i], 1e-5, $"emulator [{i}]");
            Close(reference, cl[i], 1e-5, $"OpenCL [{i}]");
        }
    }

    [BackendFact("opencl")]
    public void LoopWithXMath_RowLogSumExp_MatchesReference()
    {
        const int rows = 37, cols = 19, group = 16, grid = (rows + group - 1) / group;
        var x = Random(rows * cols, 5, 10f);
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[rows]);
        SampleKernels.Launch.RowLogSumExp(Emulator, grid, group, ex.View, ey.View, cols);
        var cl = new float[rows];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.RowLogSumExpSource.OpenCLSource, "RowLogSumExp", (grid, 1), (group, 1), x, cl, cols);
        var emu = ey.ToArray();
        for (int r = 0; r < rows; r++)
        {
            double max = x.Skip(r * cols).Take(cols).Max(), sum = x.Skip(r * cols).Take(cols).Sum(v => Math.Exp(v - max));
            double reference = Math.Log(sum) + max;
            Close(reference, emu[r], 1e-5, $"emulator row {r}");
            Close(reference, cl[r], 1e-5, $"OpenCL row {r}");
        }
    }

    [BackendFact("opencl")]
    public void WarpShuffleAndAtomics_MatchReference()
    {
        const int n = 150, group = 64, grid = (n + group - 1) / group;
        var x = Random(n, 6);
        double reference = x.Sum(v => (double)v);
        using var ex = new EmuArray(x);
        using var et = new EmuArray(new float[1]);
        var countBuffer = Emulator.Allocate(sizeof(int));
        var countView = new ArrayView<int>((int*)countBuffer.Pointer, 1);
        SampleKernels.Launch.WarpAtomicSum(Emulator, grid, group, ex.View, et.View, countView);
        Close(reference, et.ToArray()[0], 1e-5, "emulator total");
        Assert.Equal(grid * group / 32, countView[0]);
        countBuffer.Dispose();

        var total = new float[1];
        var count = new int[1];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.WarpAtomicSumSource.OpenCLSource, "WarpAtomicSum", (grid, 1), (group, 1), x, total, count);
        Close(reference, total[0], 1e-5, "OpenCL total");
        Assert.Equal(grid * group / 32, count[0]);
    }

    [BackendFact("opencl")]
    public void GenericKernel_OneInstancePerOperator_MatchesReference()
    {
        const int n = 90, group = 32, grid = (n + group - 1) / group;
        var x = Random(n, 7);
        using var ocl = new OpenClShim();
        foreach (var (source, op) in new (KernelSource, Func<double, double>)[]
                 {
                     (SampleKernels.Launch.Unary__ExpOpSource, Math.Exp),
                     (SampleKernels.Launch.Unary__HalfReluOpSource, v => v > 0 ? 0.5 * v : 0),
                 })
        {
            using var ex = new EmuArray(x);
            using var ey = new EmuArray(new float[n]);
            if (source.EntryPoint == "Unary__ExpOp") SampleKernels.Launch.Unary__ExpOp(Emulator, grid, group, ex.View, ey.View);
            else SampleKernels.Launch.Unary__HalfReluOp(Emulator, grid, group, ex.View, ey.View);
            var cl = new float[n];
            ocl.Run(source.OpenCLSource, source.EntryPoint, (grid, 1), (group, 1), x, cl);
            var emu = ey.ToArray();
            for (int i = 0; i < n; i++)
            {
                Close(op(x[i]), emu[i], 1e-6, $"{source.Name} emulator [{i}]");
                Close(op(x[i]), cl[i], 1e-6, $"{source.Name} OpenCL [{i}]");
            }
        }
    }

    [BackendFact("opencl")]
    public void DynamicSharedMemory_SizedAtLaunch_MatchesReference()
    {
        const int group = 48, grid = 3, n = group * grid;
        var x = Random(n, 8);
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[n]);
        SampleKernels.Launch.GroupReverse(Emulator, grid, group, ex.View, ey.View, dynamicSharedBytes: group * sizeof(float));
        var source = SampleKernels.Launch.GroupReverseSource;
        Assert.True(source.UsesDynamicSharedMemory);
        var cl = new float[n];
        using var ocl = new OpenClShim();
        ocl.Run(source.OpenCLSource, "GroupReverse", (grid, 1), (group, 1), x, cl, new LocalMemory(group * sizeof(float)), group * sizeof(float));
        var emu = ey.ToArray();
        for (int i = 0; i < n; i++)
        {
            int g = i / group, t = i % group;
            float expected = x[g * group + group - 1 - t];
            Assert.Equal(expected, emu[i]);
            Assert.Equal(expected, cl[i]);
        }
    }

    [BackendFact("opencl")]
    public void MathTable_EveryFloatIntrinsic_MatchesReference()
    {
        const int n = 40, group = 16, grid = (n + group - 1) / group, f = SampleKernels.MathFunctions;
        var x = Random(n, 9, 3f);
        x[0] = 0f; // 0/0 is NaN: IsNaN true, IsInfinity false
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[n * f]);
        SampleKernels.Launch.MathTable(Emulator, grid, group, ex.View, ey.View);
        var cl = new float[n * f];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.MathTableSource.OpenCLSource, "MathTable", (grid, 1), (group, 1), x, cl);
        var emu = ey.ToArray();
        for (int i = 0; i < n; i++)
        {
            double v = x[i], a = Math.Abs(v) + 0.5;
            double[] reference =
            [
                Math.Exp(v), Math.Pow(2, v), Math.Log(a), Math.Log2(a), Math.Sqrt(a), 1 / Math.Sqrt(a), Math.Tanh(v),
                v * a + 1, Math.Max(v, 0.25) + Math.Min(v, -0.25), Math.Floor(v) + 3 + 5 + 2,
                v == 0 ? 1 : 0, v == 0 ? 0 : 1,
                Math.Sin(v) + Math.Cos(v) + Math.Pow(a, 1.5) + Math.Ceiling(v), Math.Exp(v) + Math.Sqrt(a) + (double)(x[i] % 0.75f),
                Math.Exp(v / 4) - 1 + Math.Log(1 + a), Math.Tan(v / 4) + Math.Sinh(v / 2) + Math.Cosh(v / 2),
                Math.Asin(v / 4) + Math.Acos(v / 4) + Math.Atan(v) + Math.Atan2(v, a), Math.Cbrt(v) + Math.CopySign(a, v),
                Math.Round(x[i] * 2f) + Math.Truncate(v), Math.Max(v, 0) + Math.Min(v, 0) + Math.Sqrt(v * v + a * a),
            ];
            for (int k = 0; k < f; k++)
            {
                Close(reference[k], emu[i * f + k], 2e-6, $"emulator f{k}({x[i]})");
                Close(reference[k], cl[i * f + k], 1e-5, $"OpenCL f{k}({x[i]})");
            }
        }
    }

    [BackendFact("opencl")]
    public void GenericMathOps_SharedWithTheCpuPath_MatchReference()
    {
        const int n = 70, group = 32, grid = (n + group - 1) / group;
        using var ocl = new OpenClShim();

        var x = Random(n, 10, 8f);
        x[0] = float.NaN;
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[n]);
        SampleKernels.Launch.FloatUnary__SigmoidOp(Emulator, grid, group, ex.View, ey.View);
        var cl = new float[n];
        ocl.Run(SampleKernels.Launch.FloatUnary__SigmoidOpSource.OpenCLSource, "FloatUnary__SigmoidOp", (grid, 1), (group, 1), x, cl);
        var emu = ey.ToArray();
        Assert.True(float.IsNaN(emu[0]) && float.IsNaN(cl[0]));
        for (int i = 1; i < n; i++)
        {
            Assert.Equal(SigmoidOp.Invoke(x[i]), emu[i]); // the emulator runs the same C#
            Close(1 / (1 + Math.Exp(-x[i])), cl[i], 1e-6, $"OpenCL sigmoid({x[i]})");
        }

        var b = Random(n, 11, 8f);
        b[1] = float.NaN; // T.Max propagates NaN in .NET; the kernel must too
        var y = new float[n];
        ocl.Run(SampleKernels.Launch.Binary__Single__MaxTwiceMinusOpSource.OpenCLSource, "Binary__Single__MaxTwiceMinusOp", (grid, 1), (group, 1), x, b, y);
        for (int i = 0; i < n; i++)
        {
            float expected = MaxTwiceMinusOp.Invoke(x[i], b[i]);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(y[i]), $"NaN expected at {i}, got {y[i]}");
            else Assert.Equal(expected, y[i]);
        }

        var ia = Enumerable.Range(0, n).Select(i => (i * 37) % 23 - 11).ToArray();
        var ib = Enumerable.Range(0, n).Select(i => (i * 11) % 19 - 9).ToArray();
        var iy = new int[n];
        ocl.Run(SampleKernels.Launch.Binary__Int32__MaxTwiceMinusOpSource.OpenCLSource, "Binary__Int32__MaxTwiceMinusOp", (grid, 1), (group, 1), ia, ib, iy);
        for (int i = 0; i < n; i++) Assert.Equal(Math.Max(ia[i], ib[i]) * 2 - ib[i], iy[i]);
    }

    [BackendFact("opencl")]
    public void StructParameterAndStructReturningFunction_MatchReference()
    {
        const int rows = 21, cols = 13, group = 8, grid = (rows + group - 1) / group;
        var x = Random(rows * cols, 12, 6f);
        var map = new AffineMap { Scale = 0.75f, Shift = -1.5f, Rows = rows - 1 }; // the last row is left alone
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[rows]);
        SampleKernels.Launch.RowLogSumExpOnline(Emulator, grid, group, ex.View, ey.View, cols, map);
        var cl = new float[rows];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.RowLogSumExpOnlineSource.OpenCLSource, "RowLogSumExpOnline", (grid, 1), (group, 1), x, cl, cols, map);
        var emu = ey.ToArray();
        for (int r = 0; r < rows - 1; r++)
        {
            var z = x.Skip(r * cols).Take(cols).Select(v => 0.75 * v - 1.5).ToArray();
            double reference = z.Max() + Math.Log(z.Sum(v => Math.Exp(v - z.Max())));
            Close(reference, emu[r], 1e-5, $"emulator row {r}");
            Close(reference, cl[r], 1e-5, $"OpenCL row {r}");
        }
        Assert.Equal(0f, emu[rows - 1]);
        Assert.Equal(0f, cl[rows - 1]);
    }

    [BackendFact("opencl")]
    public void SharedViewPassedToKernelFunction_MatchesReference()
    {
        const int group = SampleKernels.ReduceGroup, grid = 3, n = group * grid;
        var x = Random(n, 13);
        using var ex = new EmuArray(x);
        using var ey = new EmuArray(new float[n]);
        SampleKernels.Launch.CenterPerGroup(Emulator, grid, group, ex.View, ey.View);
        var source = SampleKernels.Launch.CenterPerGroupSource.OpenCLSource;
        Assert.Contains("float SampleKernels_ReduceShared_local0(__local float* shared, long shared_len, float value)", source);
        var cl = new float[n];
        using var ocl = new OpenClShim();
        ocl.Run(source, "CenterPerGroup", (grid, 1), (group, 1), x, cl);
        var emu = ey.ToArray();
        for (int g = 0; g < grid; g++)
        {
            double mean = x.Skip(g * group).Take(group).Sum(v => (double)v) / group;
            for (int i = g * group; i < (g + 1) * group; i++)
            {
                Close(x[i] - mean, emu[i], 1e-5, $"emulator [{i}]");
                Close(x[i] - mean, cl[i], 1e-5, $"OpenCL [{i}]");
            }
        }
    }

    [BackendFact("opencl")]
    public void InlineArrayStrides_BroadcastAdd_MatchesReference()
    {
        // a: [3, 1, 5], b: [4, 1] -> y: [3, 4, 5]
        int[] shape = [3, 4, 5];
        var layout = new BroadcastLayout { Rank = 3 };
        int[] strideA = [5, 0, 1], strideB = [0, 1, 0];
        for (int d = 0; d < 3; d++) { layout.Shape[d] = shape[d]; layout.StrideA[d] = strideA[d]; layout.StrideB[d] = strideB[d]; }
        var a = Random(15, 14);
        var b = Random(4, 15);
        const int n = 60, group = 16, grid = (n + group - 1) / group;
        using var ea = new EmuArray(a);
        using var eb = new EmuArray(b);
        using var ey = new EmuArray(new float[n]);
        SampleKernels.Launch.BroadcastAdd(Emulator, grid, group, ea.View, eb.View, ey.View, layout);
        var cl = new float[n];
        using var ocl = new OpenClShim();
        ocl.Run(SampleKernels.Launch.BroadcastAddSource.OpenCLSource, "BroadcastAdd", (grid, 1), (group, 1), a, b, cl, layout);
        var emu = ey.ToArray();
        for (int i0 = 0; i0 < 3; i0++)
        for (int i1 = 0; i1 < 4; i1++)
        for (int i2 = 0; i2 < 5; i2++)
        {
            int flat = (i0 * 4 + i1) * 5 + i2;
            float expected = a[i0 * 5 + i2] + b[i1];
            Assert.Equal(expected, emu[flat]);
            Assert.Equal(expected, cl[flat]);
        }
    }

    /// <summary>The architectures every kernel must compile for.</summary>
    public static TheoryData<int> Architectures => new() { 70, 80, 90 };

    /// <summary>
    /// Every kernel of this assembly (the samples and the emulator tests' kernels) and of Engine.Tensors
    /// (kernels/: elementwise, reduce, softmax, gemm), whose module initializer is run first so its
    /// kernels are registered even when no other test has loaded it yet.
    /// </summary>
    private static List<KernelSource> KernelsUnderTest()
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Engine.Tensors.Tensor).Module.ModuleHandle);
        var kernels = KernelRegistry.All.Where(k => k.DeclaringType.StartsWith("Engine.Tests") || k.DeclaringType.StartsWith("Engine.Tensors")).ToList();
        Assert.True(kernels.Count(k => k.DeclaringType.StartsWith("Engine.Tests")) >= 16, "expected the sample kernels to be registered");
        Assert.True(kernels.Count(k => k.DeclaringType.StartsWith("Engine.Tensors")) >= 10, "expected Engine.Tensors' kernels (kernels/) to be registered");
        return kernels;
    }

    [BackendTheory("nvrtc")]
    [MemberData(nameof(Architectures))]
    public void EveryKernel_CompilesWithNvrtc_WithoutSpills(int arch)
    {
        foreach (var kernel in KernelsUnderTest())
        {
            var (ok, log, cubin) = NvrtcShim.Compile(kernel.CudaSource, kernel.EntryPoint, arch);
            Assert.True(ok, $"{kernel.Name} failed for sm_{arch}:\n{log}\n--- source ---\n{kernel.CudaSource}");
            Assert.True(cubin > 0, $"{kernel.Name}: empty cubin for sm_{arch}");
            Assert.Contains("bytes spill", log); // the ptxas report is there...
            Assert.DoesNotMatch(@"[1-9]\d* bytes spill", log); // ...and says zero spills
        }
    }

    [BackendFact("opencl")]
    public void EveryKernel_BuildsWithPoCL()
    {
        using var ocl = new OpenClShim();
        foreach (var kernel in KernelsUnderTest())
            ocl.Build(kernel.OpenCLSource);
    }
}
