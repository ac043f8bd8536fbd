using Engine.Runtime;
using Engine.Runtime.Kernels;
using Microsoft.CodeAnalysis;

namespace Engine.Tests.KernelCompiler;

/// <summary>
/// What the translator emits for each construct of the kernel language, in CUDA C and OpenCL C
/// (the generator run in-process on source strings); the kitchen-sink kernel is also built by
/// PoCL and NVRTC.
/// </summary>
public class KernelTranslationTests
{
    private const string Extra = """
        public struct Affine { public float Scale; public float Shift; public long Count; }
        public interface IOp { static abstract float Apply(float x); }
        public struct Square : IOp { public static float Apply(float x) => x * x; }
        public struct Negate : IOp { public static float Apply(float x) => -x; }
        """;

    private const string KitchenSink = """
        [KernelFunction] static float Clamp01(float v) => XMath.Min(XMath.Max(v, 0f), 1f);
        [KernelFunction] static float Twice(float v) => Clamp01(v) * 2f;
        [KernelFunction] static float Head(ArrayView<float> v) => v.Length > 0 ? v[0] : 0f;
        [KernelFunction] static Affine Make(float s) => new Affine { Scale = s, Count = 3 };

        [Kernel]
        static void Sink(ArrayView<float> x, ArrayView<float> y, ArrayView<int> counts, ArrayView<double> d, Affine affine, bool flag, uint u, long big)
        {
            const int Tile = 128;
            int i = Grid.GlobalIndexX;
            long total = x.Length + big;
            long mixed = u + i;
            float max = 0.5f * XMath.Rsqrt(2f) + XMath.Fma(1f, 2f, 3f) + MathF.Sqrt(4f) + 1e-5f;
            if (i >= x.IntLength) return;
            {
                var tile = SharedMemory.Allocate<float>(Tile);
                tile[Group.IdxX] = x[i];
                Group.Barrier();
                max = tile[(Group.IdxX + 1) % Group.DimX];
            }
            float r = x[i] % 3f + (int)(x[i] * 1e10f) + (i << i);
            int k = 0;
            do { k++; if (k == 2) continue; if (k > 5) break; } while (k < 10);
            float inf = float.PositiveInfinity;
            switch (k % 3)
            {
                case 0: inf += 1f; break;
                case 1:
                case 2: { float t = 2f; inf -= t; break; }
                default: return;
            }
            float v = flag ? affine.Scale * x[i] + affine.Shift : Twice(x[i]);
            v += Warp.ShuffleDown(v, 1) + Warp.ShuffleXor(v, 2);
            Atomic.Add(ref counts[0], 1);
            Atomic.Max(ref y[1], v);
            Atomic.CompareExchange(ref counts[1], 0, 7);
            Atomic.Add(ref y[0], r);
            d[i] = Math.Exp((double)v) + total + mixed + k + (inf > 0f ? 1 : 0) + max;
            Affine made = Make(v);
            Affine zero = default;
            var zero2 = new Affine();
            made.Shift += zero.Scale + zero2.Shift;
            var tail = x.SubView(1, 2);
            y[0] = Head(x) + Head(x.SubView(2, 1)) + Head(tail);
            y[i] = tail[0] + (int)(u >> 1) + Group.LinearIndex + Grid.IdxY + Group.DimY + Warp.LaneIdx;
        }

        [Kernel, KernelInstance(typeof(Square)), KernelInstance(typeof(Negate))]
        static void Map<TOp>(ArrayView<float> x) where TOp : struct, IOp
        {
            int i = Grid.GlobalIndexX;
            if (i < x.Length) x[i] = TOp.Apply(x[i]);
        }
        """;

    private static GeneratorHarness.Result Sink()
    {
        var result = GeneratorHarness.RunClass(KitchenSink, Extra);
        Assert.Empty(result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error));
        return result;
    }

    [Fact]
    public void Signatures_ViewsBecomePointerPlusLength()
    {
        var r = Sink();
        Assert.Contains("extern \"C\" __global__ void Sink(float* x, long long x_len, float* y, long long y_len, int* counts, long long counts_len, double* d, long long d_len, Affine affine, bool flag, unsigned int u, long long big)", r.Cuda("Sink"));
        Assert.Contains("__kernel void Sink(__global float* x_base, long x_offset, long x_len, __global float* y_base, long y_offset, long y_len, " +
                        "__global int* counts_base, long counts_offset, long counts_len, __global double* d_base, long d_offset, long d_len, Affine affine, int flag, uint u, long big)", r.OpenCL("Sink"));
        Assert.Contains("__global float* x = x_base + x_offset;", r.OpenCL("Sink")); // views are (cl_mem, element offset) on OpenCL
        Assert.Contains("typedef struct Affine\n{\n    float Scale;\n    float Shift;\n    long long Count;\n} Affine;", r.Cuda("Sink"));
        Assert.Contains("    long Count;", r.OpenCL("Sink"));
        Assert.Contains("#pragma OPENCL EXTENSION cl_khr_fp64 : enable", r.OpenCL("Sink"));
        Assert.Contains("long long total = (x_len + big);", r.Cuda("Sink"));
        Assert.Contains("((int)x_len)", r.Cuda("Sink"));
    }

    [Fact]
    public void Conversions_FollowCSharp_NotC()
    {
        var r = Sink();
        // uint + int is long in C# (unsigned int in C): both operands are widened explicitly.
        Assert.Contains("long long mixed = (((long long)u) + ((long long)i));", r.Cuda("Sink"));
        Assert.Contains("float r = ((fmodf(x[i], 3.0f) + ", r.Cuda("Sink"));
        Assert.Contains("float r = ((fmod(x[i], 3.0f) + ", r.OpenCL("Sink"));
        Assert.Contains("__int_as_float(0x7f800000)", r.Cuda("Sink"));
        Assert.Contains("as_float(0x7f800000u)", r.OpenCL("Sink"));
        Assert.Contains("(0.5f * rsqrtf(2.0f))", r.Cuda("Sink"));
        Assert.Contains("1E-05f", r.Cuda("Sink"));
        // float -> int saturates in .NET and CUDA; OpenCL needs convert_int_sat.
        Assert.Contains("((int)(((u >> 1))))", r.Cuda("Sink"));
        Assert.Contains("convert_int_sat(", r.OpenCL("Sink"));
        Assert.Contains("(i << (i & 31))", r.Cuda("Sink"));
    }

    [Fact]
    public void MathGoesThroughOneTable()
    {
        var r = Sink();
        string cuda = r.Cuda("Sink"), ocl = r.OpenCL("Sink");
        Assert.Contains("rsqrtf(2.0f)", cuda);
        Assert.Contains("rsqrt(2.0f)", ocl);
        Assert.Contains("fmaf(1.0f, 2.0f, 3.0f)", cuda);
        Assert.Contains("fma(1.0f, 2.0f, 3.0f)", ocl);
        Assert.Contains("sqrtf(4.0f)", cuda);
        Assert.Contains("exp(((double)(v)))", cuda);
        Assert.Contains("fminf(fmaxf(v, 0.0f), 1.0f)", cuda);
        Assert.Contains("fmin(fmax(v, 0.0f), 1.0f)", ocl);
    }

    [Fact]
    public void IndicesAndBarriers()
    {
        var r = Sink();
        Assert.Contains("((int)(blockIdx.x * blockDim.x + threadIdx.x))", r.Cuda("Sink"));
        Assert.Contains("((int)get_global_id(0))", r.OpenCL("Sink"));
        Assert.Contains("((int)blockIdx.y)", r.Cuda("Sink"));
        Assert.Contains("((int)get_group_id(1))", r.OpenCL("Sink"));
        Assert.Contains("((int)get_local_size(1))", r.OpenCL("Sink"));
        Assert.Contains("__syncthreads();", r.Cuda("Sink"));
        Assert.Contains("barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);", r.OpenCL("Sink"));
    }

    [Fact]
    public void SharedMemory_InPlaceOnCuda_HoistedToKernelScopeOnOpenCL()
    {
        var r = Sink();
        Assert.Contains("        __shared__ __align__(16) float tile[128];", r.Cuda("Sink"));
        string ocl = r.OpenCL("Sink");
        int header = ocl.IndexOf("__kernel void Sink", StringComparison.Ordinal);
        int local = ocl.IndexOf("__local float tile[128];", StringComparison.Ordinal);
        int firstStatement = ocl.IndexOf("int i = ", StringComparison.Ordinal);
        Assert.True(header < local && local < firstStatement, "the __local array must be declared at kernel scope, before the body");
    }

    [Fact]
    public void AtomicsAndShuffles()
    {
        var r = Sink();
        string cuda = r.Cuda("Sink"), ocl = r.OpenCL("Sink");
        Assert.Contains("atomicAdd(&counts[0], 1)", cuda);
        Assert.Contains("atomic_add(&counts[0], 1)", ocl);
        Assert.Contains("atomicAdd(&y[0], r)", cuda);
        Assert.Contains("__engine_atomic_add_f_g(&y[0], r)", ocl);
        Assert.Contains("atomic_cmpxchg(bits, old, as_int(as_float(old) + value))", ocl);
        Assert.Contains("__engine_atomic_max_f(&y[1], v)", cuda);
        Assert.Contains("atomicCAS(&counts[1], 0, 7)", cuda);
        Assert.Contains("atomic_cmpxchg(&counts[1], 0, 7)", ocl);
        Assert.Contains("__shfl_down_sync(0xffffffffu, v, 1)", cuda);
        Assert.Contains("__shfl_xor_sync(0xffffffffu, v, 2)", cuda);
        Assert.Contains("__engine_shfl_down(__engine_shfl_buf, v, 1)", ocl);
        Assert.Contains("__local float __engine_shfl_buf[1024];", ocl);
    }

    [Fact]
    public void KernelFunctions_DeclaredBeforeUse_CalleesFirst()
    {
        var r = Sink();
        string cuda = r.Cuda("Sink");
        int clamp = cuda.IndexOf("static __device__ float K_Clamp01(float v)", StringComparison.Ordinal);
        int twice = cuda.IndexOf("static __device__ float K_Twice(float v)", StringComparison.Ordinal);
        int kernel = cuda.IndexOf("__global__ void Sink", StringComparison.Ordinal);
        Assert.True(clamp >= 0 && clamp < twice && twice < kernel, cuda);
        Assert.Contains("K_Twice(x[i])", cuda);
        Assert.Contains("float K_Twice(float v)", r.OpenCL("Sink"));
    }

    [Fact]
    public void LineDirectives_PointAtTheCSharpLines()
    {
        var r = Sink();
        var source = r.Source.Split('\n');
        int expected = Array.FindIndex(source, l => l.Contains("float r = x[i] % 3f")) + 1;
        Assert.Equal(expected, MappedLine(r.Cuda("Sink"), "float r = ((fmodf"));
        Assert.Equal(expected, MappedLine(r.OpenCL("Sink"), "float r = ((fmod"));
        int kernelLine = Array.FindIndex(source, l => l.Contains("static void Sink(")) + 1;
        Assert.Equal(kernelLine, MappedLine(r.Cuda("Sink"), "__global__ void Sink("));
        Assert.Contains($"#line {kernelLine} \"{GeneratorHarness.FilePath}\"", r.Cuda("Sink"));
    }

    /// <summary>The C# line a C line maps to, following #line semantics (the line after "#line N" is N).</summary>
    private static int MappedLine(string c, string text)
    {
        int? mapped = null;
        foreach (var line in c.Split('\n'))
        {
            if (line.StartsWith("#line ")) { mapped = int.Parse(line.Split(' ')[1]); continue; }
            if (line.Contains(text)) return mapped ?? -1;
            if (mapped is not null) mapped++;
        }
        return -2;
    }

    [Fact]
    public void ViewsPassToKernelFunctions_AsPointerAndLength()
    {
        var r = Sink();
        Assert.Contains("static __device__ float K_Head(float* v, long long v_len)", r.Cuda("Sink"));
        Assert.Contains("float K_Head(__global float* v, long v_len)", r.OpenCL("Sink"));
        Assert.Contains("K_Head(x, x_len)", r.Cuda("Sink"));
        Assert.Contains("K_Head((x + 2LL), ((long long)1LL))", r.Cuda("Sink"));
        Assert.Contains("K_Head(tail, tail_len)", r.Cuda("Sink"));
    }

    [Fact]
    public void StructValues_ThroughAMakerFunction()
    {
        var r = Sink();
        string cuda = r.Cuda("Sink");
        Assert.Contains("static __device__ Affine __engine_make_Affine(float f0, float f1, long long f2)", cuda);
        Assert.Contains("return __engine_make_Affine(s, 0.0f, 3LL);", cuda);
        Assert.Contains("Affine zero = __engine_make_Affine(0.0f, 0.0f, 0LL);", cuda);
        Assert.Contains("static Affine __engine_make_Affine(float f0, float f1, long f2)", r.OpenCL("Sink"));
    }

    [Fact]
    public void ControlFlow()
    {
        var r = Sink();
        string cuda = r.Cuda("Sink");
        Assert.Contains("    do\n", cuda);
        Assert.Contains("while ((k < 10));", cuda);
        Assert.Contains("continue;", cuda);
        Assert.Contains("switch ((k % 3))", cuda);
        Assert.Contains("case 1:", cuda);
        Assert.Contains("default:", cuda);
        Assert.Contains("break;", cuda);
        Assert.Contains("(flag ? ((affine.Scale * x[i]) + affine.Shift) : K_Twice(x[i]))", cuda);
        Assert.Contains("float* tail = (x + 1LL);", cuda);
        Assert.Contains("long long tail_len = ((long long)2LL);", cuda);
        Assert.Contains("__global float* tail = (x + 1L);", r.OpenCL("Sink"));
    }

    [Fact]
    public void GenericKernel_OneMangledEntryPointPerInstance()
    {
        var r = Sink();
        Assert.Contains("extern \"C\" __global__ void Map__Square(float* x, long long x_len)", r.Cuda("Map__Square"));
        Assert.Contains("(x[i] = Square_Apply(x[i]))", r.Cuda("Map__Square"));
        Assert.Contains("return (x * x);", r.Cuda("Map__Square"));
        Assert.Contains("__kernel void Map__Negate(__global float* x_base, long x_offset, long x_len)", r.OpenCL("Map__Negate"));
        Assert.Contains("return -(x);", r.OpenCL("Map__Negate"));
    }

    [Fact]
    public void GeneratedLaunchers_ForEmulatorAndDevices()
    {
        var r = Sink();
        Assert.Contains("internal static class Launch", r.GeneratedCSharp);
        Assert.Contains("public static void Sink(global::Engine.Runtime.EmulatorAccelerator accelerator, global::Engine.Runtime.Kernels.Dim3 grid, global::Engine.Runtime.Kernels.Dim3 group, global::Engine.Runtime.Kernels.ArrayView<float> x", r.GeneratedCSharp);
        Assert.Contains("() => global::T.K.Map<global::T.Square>(x)", r.GeneratedCSharp);
        Assert.Contains("public static void Map__Negate(global::Engine.Runtime.Kernels.IKernelLauncher launcher", r.GeneratedCSharp);
        Assert.Contains("KernelRegistry.Register(Sink, Map__Square, Map__Negate)", r.GeneratedCSharp);
    }

    [Fact]
    public void NonPartialClass_GetsSourcesButNoLauncher_AndAnInfo()
    {
        var r = GeneratorHarness.Run("using Engine.Runtime.Kernels;\nstatic class Plain { [Kernel] static void A(ArrayView<float> y) { y[0] = 1f; } }");
        Assert.Contains(r.Diagnostics, d => d.Id == "KRN100" && d.Severity == DiagnosticSeverity.Info);
        Assert.True(r.Kernels.ContainsKey("A"));
        Assert.DoesNotContain("class Launch", r.GeneratedCSharp);
    }

    [Fact]
    public void GeneratedCSharp_CompilesForNestedTypesAndTheGlobalNamespace()
    {
        var r = GeneratorHarness.Run("""
            using Engine.Runtime.Kernels;
            public static partial class Outer
            {
                internal static partial class Inner
                {
                    [Kernel] private static void Scale(ArrayView<float> y, float s) { int i = Grid.GlobalIndexX; if (i < y.Length) y[i] *= s; }
                }
            }
            public static class Use
            {
                public static void Run(Engine.Runtime.EmulatorAccelerator acc, ArrayView<float> y)
                    => Outer.Inner.Launch.Scale(acc, 1, 32, y, 2f);
            }
            """);
        Assert.Empty(r.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error));
        Assert.Contains("y[i] *= s", r.Cuda("Scale").Replace("(", "").Replace(")", ""));
    }

    [Fact]
    public void InlineArrays_BecomeCArraysInAStruct()
    {
        var r = GeneratorHarness.RunClass("""
            [Kernel] static void A(ArrayView<long> y, Long3 dims)
            {
                Long3 copy = default;
                for (int d = 0; d < 3; d++) copy[d] = dims[d] * 2;
                y[0] = copy[0] + copy[2];
            }
            """, "[System.Runtime.CompilerServices.InlineArray(3)] public struct Long3 { private long _e; }");
        Assert.Empty(r.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error));
        string cuda = r.Cuda("A");
        Assert.Contains("typedef struct Long3\n{\n    long long e[3];\n} Long3;", cuda);
        Assert.Contains("Long3 copy = __engine_zero_Long3();", cuda);
        Assert.Contains("(copy.e[d] = (dims.e[d] * 2LL));", cuda);
        Assert.Contains("    long e[3];", r.OpenCL("A"));
    }

    [Fact]
    public void AutoProperties_AreStructFields()
    {
        var r = GeneratorHarness.RunClass("""
            [Kernel] static void A(ArrayView<float> y, Range1 range)
            {
                var shifted = new Range1 { Start = range.Start + 1, Count = range.Count };
                shifted.Count -= 1;
                y[0] = shifted.Start + shifted.Count;
            }
            """, "public struct Range1 { public int Start { get; set; } public int Count { get; set; } }");
        Assert.Empty(r.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error));
        string cuda = r.Cuda("A");
        Assert.Contains("typedef struct Range1\n{\n    int Start;\n    int Count;\n} Range1;", cuda);
        Assert.Contains("Range1 shifted = __engine_make_Range1((range.Start + 1), range.Count);", cuda);
        Assert.Contains("(shifted.Count -= 1);", cuda);
    }

    [Fact]
    public void ReservedCNames_AreRenamed()
    {
        var r = GeneratorHarness.RunClass("[Kernel] static void A(ArrayView<float> y, float max, int signed) { float exp = max; y[0] = exp + signed; }");
        Assert.Contains("float max_, int signed_", r.Cuda("A"));
        Assert.Contains("float exp_ = max_;", r.Cuda("A"));
    }

    [Fact]
    public void Incremental_AnUnrelatedEdit_ReusesTheTranslation()
    {
        var source = "using Engine.Runtime.Kernels;\nnamespace T;\npublic static partial class K { [Kernel] static void A(ArrayView<float> y) { y[0] = 1f; } }";
        var parse = new Microsoft.CodeAnalysis.CSharp.CSharpParseOptions(Microsoft.CodeAnalysis.CSharp.LanguageVersion.Preview);
        var compilation = Microsoft.CodeAnalysis.CSharp.CSharpCompilation.Create("Inc",
            [Microsoft.CodeAnalysis.CSharp.CSharpSyntaxTree.ParseText(source, parse, "A.cs")], GeneratorHarness.References.Value,
            new Microsoft.CodeAnalysis.CSharp.CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true));
        GeneratorDriver driver = Microsoft.CodeAnalysis.CSharp.CSharpGeneratorDriver.Create(
            [new Engine.KernelCompiler.KernelGenerator().AsSourceGenerator()], parseOptions: parse,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));
        driver = driver.RunGenerators(compilation);
        driver = driver.RunGenerators(compilation.AddSyntaxTrees(Microsoft.CodeAnalysis.CSharp.CSharpSyntaxTree.ParseText("class Unrelated { }", parse, "B.cs")));
        var steps = driver.GetRunResult().Results[0].TrackedSteps[Engine.KernelCompiler.KernelGenerator.TrackingName];
        Assert.All(steps.SelectMany(s => s.Outputs), o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, o.Reason.ToString()));
    }

    [BackendFact("opencl")]
    public void KitchenSink_BuildsWithPoCL()
    {
        var r = Sink();
        using var ocl = new OpenCLAccelerator();
        foreach (var (_, (_, source)) in r.Kernels) ocl.Build(source, KernelSource.OpenCLBuildOptions);
    }

    [BackendFact("nvrtc")]
    public void KitchenSink_CompilesWithNvrtc()
    {
        var r = Sink();
        foreach (var (entry, (source, _)) in r.Kernels)
        {
            var module = Nvrtc.Compile(source, "sm_80", programName: entry + ".cu");
            Assert.Contains(module.Kernels, k => k.Kernel == entry);
        }
    }

    [BackendFact("nvrtc")]
    public void NvrtcErrors_PointAtTheCSharpFile()
    {
        // A source with a deliberate C error after a #line directive: NVRTC reports the C# file and line.
        var r = Sink();
        string broken = r.Cuda("Map__Square").Replace("return (x * x);", "return (x * undefined_name);");
        var e = Assert.Throws<NvrtcException>(() => Nvrtc.Compile(broken, "sm_80", programName: "broken.cu"));
        Assert.Contains(GeneratorHarness.FilePath, e.Message);
    }
}
