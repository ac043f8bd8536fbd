using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tests.KernelCompiler;

/// <summary>
/// The translator's output, run: each sample kernel (SampleKernels.cs) runs through its generated
/// launcher on the emulator (the C# itself) and on an <see cref="OpenCLAccelerator"/> (the generated
/// OpenCL C on PoCL), both through the common <see cref="Accelerator"/> API, and both are compared
/// with a plain C# reference (float64 where it accumulates); every generated CUDA source compiles
/// with Engine.Runtime's NVRTC for sm_70/80/90 with zero spill bytes.
/// </summary>
public class KernelEndToEndTests
{
    private static readonly EmulatorAccelerator Emulator = new();

    /// <summary>A host array copied to an accelerator; <see cref="View"/> for a launch, <see cref="ToArray"/> to read it back.</summary>
    private sealed class DevArray<T> : IDisposable where T : unmanaged
    {
        private readonly Accelerator _accelerator;
        private readonly DeviceBuffer _buffer;

        public DevArray(Accelerator accelerator, T[] values)
        {
            _accelerator = accelerator;
            _buffer = accelerator.Allocate<T>(values);
            View = _buffer.View<T>();
        }

        public ArrayView<T> View { get; }
        public T[] ToArray() => _accelerator.ToArray<T>(_buffer);
        public void Dispose() => _buffer.Dispose();
    }

    /// <summary>Runs <paramref name="run"/> on the emulator and on a fresh OpenCL accelerator; returns both results.</summary>
    private static (T[] Emulator, T[] OpenCL) OnBoth<T>(Func<Accelerator, T[]> run)
    {
        var emu = run(Emulator);
        using var cl = new OpenCLAccelerator();
        return (emu, run(cl));
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> da = new(acc, a), db = new(acc, b), dy = new(acc, new float[n]);
            SampleKernels.Launch.VectorAdd(acc, grid, group, da.View, db.View, dy.View);
            return dy.ToArray();
        });
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), ds = new(acc, new float[grid]);
            SampleKernels.Launch.BlockSum(acc, grid, group, dx.View, ds.View);
            return ds.ToArray();
        });
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[n]);
            SampleKernels.Launch.SoftplusScaled(acc, grid, group, dx.View, dy.View, 0.5f);
            return dy.ToArray();
        });
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[rows]);
            SampleKernels.Launch.RowLogSumExp(acc, grid, group, dx.View, dy.View, cols);
            return dy.ToArray();
        });
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dt = new(acc, new float[1]);
            using DevArray<int> dc = new(acc, new int[1]);
            SampleKernels.Launch.WarpAtomicSum(acc, grid, group, dx.View, dt.View, dc.View);
            return new[] { (double)dt.ToArray()[0], dc.ToArray()[0] };
        });
        Close(reference, (float)emu[0], 1e-5, "emulator total");
        Close(reference, (float)cl[0], 1e-5, "OpenCL total");
        Assert.Equal(grid * group / 32, emu[1]);
        Assert.Equal(grid * group / 32, cl[1]);
    }

    [BackendFact("opencl")]
    public void GroupAndWarpReductions_MatchReference_AndAgreeBitwise()
    {
        const int n = 200, group = 96, grid = (n + group - 1) / group; // group not a power of two; last group partial
        var x = Random(n, 8);
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), ds = new(acc, new float[grid]), dm = new(acc, new float[grid]),
                dws = new(acc, new float[grid * group / 32]), dwm = new(acc, new float[grid * group / 32]),
                dcopy = new(acc, new float[grid * group]);
            SampleKernels.Launch.Reductions(acc, grid, group, dx.View, ds.View, dm.View, dws.View, dwm.View, dcopy.View);
            return ds.ToArray().Concat(dm.ToArray()).Concat(dws.ToArray()).Concat(dwm.ToArray()).Concat(dcopy.ToArray()).ToArray();
        });
        Assert.Equal(emu, cl); // the same reduction order on both backends: bitwise equal
        for (int g = 0; g < grid; g++)
        {
            var slice = x.Skip(g * group).Take(group).ToArray();
            Close(slice.Sum(v => (double)v), emu[g], 1e-5, $"group {g} sum");
            Assert.Equal(slice.Max(), emu[grid + g]);
            for (int t = 0; t < group; t++) Assert.Equal(emu[g], emu[2 * grid + 2 * (grid * group / 32) + g * group + t]);
        }
        for (int w = 0; w < grid * group / 32; w++)
        {
            var lanes = Enumerable.Range(w * 32, 32).Select(i => i < n ? x[i] : 0f).ToArray();
            Close(lanes.Sum(v => (double)v), emu[2 * grid + w], 1e-5, $"warp {w} sum");
            var present = Enumerable.Range(w * 32, 32).Where(i => i < n).Select(i => x[i]).ToArray();
            Assert.Equal(present.Length == 0 ? float.NegativeInfinity : present.Max(), emu[2 * grid + grid * group / 32 + w]);
        }
    }

    [BackendFact("opencl")]
    public void GenericKernel_OneInstancePerOperator_MatchesReference()
    {
        const int n = 90, group = 32, grid = (n + group - 1) / group;
        var x = Random(n, 7);
        foreach (var (source, op) in new (KernelSource, Func<double, double>)[]
                 {
                     (SampleKernels.Launch.Unary__ExpOpSource, Math.Exp),
                     (SampleKernels.Launch.Unary__HalfReluOpSource, v => v > 0 ? 0.5 * v : 0),
                 })
        {
            var (emu, cl) = OnBoth(acc =>
            {
                using DevArray<float> dx = new(acc, x), dy = new(acc, new float[n]);
                if (source.EntryPoint == "Unary__ExpOp") SampleKernels.Launch.Unary__ExpOp(acc, grid, group, dx.View, dy.View);
                else SampleKernels.Launch.Unary__HalfReluOp(acc, grid, group, dx.View, dy.View);
                return dy.ToArray();
            });
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
        Assert.True(SampleKernels.Launch.GroupReverseSource.UsesDynamicSharedMemory);
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[n]);
            SampleKernels.Launch.GroupReverse(acc, grid, group, dx.View, dy.View, dynamicSharedBytes: group * sizeof(float));
            return dy.ToArray();
        });
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[n * f]);
            SampleKernels.Launch.MathTable(acc, grid, group, dx.View, dy.View);
            return dy.ToArray();
        });
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
        using var ocl = new OpenCLAccelerator();

        var x = Random(n, 10, 8f);
        x[0] = float.NaN;
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[n]);
            SampleKernels.Launch.FloatUnary__SigmoidOp(acc, grid, group, dx.View, dy.View);
            return dy.ToArray();
        });
        Assert.True(float.IsNaN(emu[0]) && float.IsNaN(cl[0]));
        for (int i = 1; i < n; i++)
        {
            Assert.Equal(SigmoidOp.Invoke(x[i]), emu[i]); // the emulator runs the same C#
            Close(1 / (1 + Math.Exp(-x[i])), cl[i], 1e-6, $"OpenCL sigmoid({x[i]})");
        }

        var b = Random(n, 11, 8f);
        b[1] = float.NaN; // T.Max propagates NaN in .NET; the kernel must too
        float[] y;
        using (DevArray<float> da = new(ocl, x), db = new(ocl, b), dy = new(ocl, new float[n]))
        {
            SampleKernels.Launch.Binary__Single__MaxTwiceMinusOp(ocl, grid, group, da.View, db.View, dy.View);
            y = dy.ToArray();
        }
        for (int i = 0; i < n; i++)
        {
            float expected = MaxTwiceMinusOp.Invoke(x[i], b[i]);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(y[i]), $"NaN expected at {i}, got {y[i]}");
            else Assert.Equal(expected, y[i]);
        }

        var ia = Enumerable.Range(0, n).Select(i => (i * 37) % 23 - 11).ToArray();
        var ib = Enumerable.Range(0, n).Select(i => (i * 11) % 19 - 9).ToArray();
        int[] iy;
        using (DevArray<int> da = new(ocl, ia), db = new(ocl, ib), dy = new(ocl, new int[n]))
        {
            SampleKernels.Launch.Binary__Int32__MaxTwiceMinusOp(ocl, grid, group, da.View, db.View, dy.View);
            iy = dy.ToArray();
        }
        for (int i = 0; i < n; i++) Assert.Equal(Math.Max(ia[i], ib[i]) * 2 - ib[i], iy[i]);
    }

    [BackendFact("opencl")]
    public void StructParameterAndStructReturningFunction_MatchReference()
    {
        const int rows = 21, cols = 13, group = 8, grid = (rows + group - 1) / group;
        var x = Random(rows * cols, 12, 6f);
        var map = new AffineMap { Scale = 0.75f, Shift = -1.5f, Rows = rows - 1 }; // the last row is left alone
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[rows]);
            SampleKernels.Launch.RowLogSumExpOnline(acc, grid, group, dx.View, dy.View, cols, map);
            return dy.ToArray();
        });
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
        var source = SampleKernels.Launch.CenterPerGroupSource.OpenCLSource;
        Assert.Contains("float SampleKernels_ReduceShared_local0(__local float* shared, long shared_len, float value)", source);
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> dx = new(acc, x), dy = new(acc, new float[n]);
            SampleKernels.Launch.CenterPerGroup(acc, grid, group, dx.View, dy.View);
            return dy.ToArray();
        });
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
        var (emu, cl) = OnBoth(acc =>
        {
            using DevArray<float> da = new(acc, a), db = new(acc, b), dy = new(acc, new float[n]);
            SampleKernels.Launch.BroadcastAdd(acc, grid, group, da.View, db.View, dy.View, layout);
            return dy.ToArray();
        });
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

    /// <summary>The architectures every kernel must compile for (Volta, Ampere, Hopper).</summary>
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
            NvrtcModule module;
            try { module = Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: kernel.EntryPoint + ".cu"); }
            catch (NvrtcException e) { throw new Xunit.Sdk.XunitException($"{kernel.Name} failed for sm_{arch}:\n{e.Message}\n--- source ---\n{kernel.CudaSource}"); }
            Assert.True(module.Cubin.Length > 0, $"{kernel.Name}: empty cubin for sm_{arch}");
            var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint); // the ptxas report is there...
            Assert.True(usage.SpillBytes == 0, $"{kernel.Name} spills on sm_{arch}: {usage}"); // ...and says zero spills
        }
    }

    [BackendFact("opencl")]
    public void EveryKernel_BuildsWithPoCL()
    {
        using var ocl = new OpenCLAccelerator();
        foreach (var kernel in KernelsUnderTest())
            ocl.Build(kernel.OpenCLSource, KernelSource.OpenCLBuildOptions);
    }
}
