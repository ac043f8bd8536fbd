using System.Runtime.CompilerServices;
using Engine.Runtime;
using Engine.Runtime.Kernels;
using Microsoft.CodeAnalysis;

namespace Engine.Tests.KernelCompiler;

/// <summary>Four floats in registers, indexed by fully unrolled loops.</summary>
[InlineArray(4)]
public struct Quad
{
    private float _element;
}

/// <summary>Sample kernels of the vector and loop-hint constructs (Float4, Loop.Unroll, LaunchBounds), run end to end.</summary>
public static partial class VectorSampleKernels
{
    /// <summary>Group size of <see cref="ReverseQuads"/>.</summary>
    public const int GroupSize = 64;

    /// <summary>
    /// y[4i + j] = 2·x[4i + 3 − j] for i &lt; n: one Float4 load of x into global memory, a round trip through
    /// shared memory as Float4, the reversal through a register array indexed by an unrolled loop, one Float4 store.
    /// </summary>
    [Kernel, LaunchBounds(GroupSize, 4)]
    public static void ReverseQuads(ArrayView<float> x, ArrayView<float> y, int n)
    {
        var stage = SharedMemory.Allocate<float>(4 * GroupSize);
        int i = Grid.GlobalIndexX, local = Group.IdxX;
        Float4 v = default;
        if (i < n) v = Float4.Load(x, 4 * i);
        Float4.Store(stage, 4 * local, v);
        Group.Barrier();
        Float4 w = Float4.Load(stage, 4 * local);
        Quad q = default;
        q[0] = w.X; q[1] = w.Y; q[2] = w.Z; q[3] = w.W;
        Loop.Unroll();
        for (int j = 0; j < 4; j++) q[j] *= 2f;
        if (i < n) Float4.Store(y, 4 * i, new Float4 { X = q[3], Y = q[2], Z = q[1], W = q[0] });
    }
}

/// <summary>
/// Float4 (16-byte vector loads/stores), Loop.Unroll (#pragma unroll) and [LaunchBounds]: what the
/// translator emits, what it rejects, and a sample kernel run on the emulator and PoCL against a
/// reference and compiled by NVRTC without a stack frame (its register array stays in registers).
/// </summary>
public class VectorLoopTests
{
    private const string Body = """
        [Kernel, LaunchBounds(128, 2)]
        static void V(ArrayView<float> x, ArrayView<float> y)
        {
            var s = SharedMemory.Allocate<float>(512);
            int i = 4 * Grid.GlobalIndexX;
            Float4 v = Float4.Load(x, i);
            v.W += v.X;
            Float4.Store(s, 4 * Group.IdxX, v);
            Group.Barrier();
            float sum = 0f;
            Loop.Unroll();
            for (int j = 0; j < 4; j++) sum += s[4 * Group.IdxX + j];
            int k = 0;
            Loop.Unroll();
            while (k < 2) { sum += 1f; k++; }
            Float4.Store(y, i, new Float4 { X = sum, Z = v.Y });
        }
        """;

    [Fact]
    public void Float4_IsTheNativeVector_LoadStoreAndFields()
    {
        var r = GeneratorHarness.RunClass(Body);
        Assert.Empty(r.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error));
        string cuda = r.Cuda("V"), ocl = r.OpenCL("V");
        Assert.Contains("float4 v = (*(const float4*)(x + i));", cuda);
        Assert.Contains("float4 v = vload4(0, (x + i));", ocl);
        Assert.Contains("(v.w += v.x);", cuda);
        Assert.Contains("(*(float4*)(s + (4 * ((int)threadIdx.x))) = v);", cuda);
        Assert.Contains("vstore4(v, 0, (s + (4 * ((int)get_local_id(0)))));", ocl);
        Assert.Contains("make_float4(sum, 0.0f, v.y, 0.0f)", cuda);
        Assert.Contains("((float4)(sum, 0.0f, v.y, 0.0f))", ocl);
        Assert.Contains("__shared__ __align__(16) float s[512];", cuda);
        Assert.DoesNotContain("typedef struct Float4", cuda);
    }

    [Fact]
    public void LoopUnroll_IsAPragmaDirectlyBeforeItsLoop()
    {
        var r = GeneratorHarness.RunClass(Body);
        foreach (var text in new[] { r.Cuda("V"), r.OpenCL("V") })
        {
            // No #line directive (or anything else) between the pragma and the loop it applies to.
            Assert.Matches(new System.Text.RegularExpressions.Regex(@"#pragma unroll\n\s*for \(int j = 0;"), text);
            Assert.Matches(new System.Text.RegularExpressions.Regex(@"#pragma unroll\n\s*while \(\(k < 2\)\)"), text);
            Assert.DoesNotContain("Unroll", text);
        }
    }

    [Fact]
    public void LaunchBounds_IsCudaOnly()
    {
        var r = GeneratorHarness.RunClass(Body);
        Assert.Contains("extern \"C\" __global__ void __launch_bounds__(128, 2) V(", r.Cuda("V"));
        Assert.Contains("__kernel void V(", r.OpenCL("V"));
    }

    private static void AssertKrn(string id, string body, string message)
    {
        var r = GeneratorHarness.RunClass(body);
        var d = Assert.Single(r.Diagnostics, d => d.Id == id);
        Assert.Contains(message, d.GetMessage());
    }

    [Fact]
    public void LoopUnroll_NotBeforeALoop_IsKRN012()
        => AssertKrn("KRN012", """
            [Kernel] static void U(ArrayView<float> y)
            {
                Loop.Unroll();
                y[0] = 1f;
            }
            """, "directly before a for, while or do loop");

    [Fact]
    public void LoopUnroll_InAnExpression_IsKRN012()
        => AssertKrn("KRN012", """
            [Kernel] static void U(ArrayView<float> y)
            {
                for (int j = 0; j < 2; j++, Loop.Unroll()) y[j] = 1f;
            }
            """, "a statement of its own");

    [Fact]
    public void LaunchBounds_NonPositive_IsKRN012()
        => AssertKrn("KRN012", """
            [Kernel, LaunchBounds(0)] static void U(ArrayView<float> y) { y[0] = 1f; }
            """, "both counts must be positive");

    [Fact]
    public void Float4_AsKernelArgumentOrStructField_IsKRN008()
    {
        AssertKrn("KRN008", """
            [Kernel] static void U(ArrayView<float> y, Float4 v) { y[0] = v.X; }
            """, "register value");
        var r = GeneratorHarness.RunClass("""
            [Kernel] static void U(ArrayView<float> y, Pair p) { y[0] = p.A.X; }
            """, "public struct Pair { public Float4 A; public float B; }");
        Assert.Contains(r.Diagnostics, d => d.Id == "KRN008" && d.GetMessage().Contains("register value"));
    }

    private static float[] Reference(float[] x, int n)
    {
        var y = new float[x.Length];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < 4; j++) y[4 * i + j] = 2f * x[4 * i + 3 - j];
        return y;
    }

    private static (float[] X, int N, Dim3 Grid) Case()
    {
        const int n = 150; // not a multiple of the group: the tail threads load nothing
        var rng = new Random(7);
        var x = new float[4 * n];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return (x, n, new Dim3((n + VectorSampleKernels.GroupSize - 1) / VectorSampleKernels.GroupSize));
    }

    [Fact]
    public void ReverseQuads_Emulator_MatchesReference()
    {
        var (x, n, grid) = Case();
        var y = new float[x.Length];
        using var emulator = new EmulatorAccelerator();
        // Managed arrays are only 8-byte aligned: the kernel reads 64-byte aligned host buffers.
        using var bx = emulator.Allocate<float>(x);
        using var by = emulator.Allocate(y.Length * sizeof(float));
        VectorSampleKernels.Launch.ReverseQuads(emulator, grid, new Dim3(VectorSampleKernels.GroupSize), bx.View<float>(), by.View<float>(), n);
        emulator.CopyToHost<float>(by, y);
        Assert.Equal(Reference(x, n), y);
    }

    [Fact]
    public void Float4_Misaligned_FaultsOnTheEmulator()
    {
        var (x, n, _) = Case();
        using var emulator = new EmulatorAccelerator();
        using var bx = emulator.Allocate<float>(x);
        using var by = emulator.Allocate(x.Length * sizeof(float));
        // A view starting one float into the buffer: every Float4 address is 4 bytes off 16.
        var e = Assert.ThrowsAny<Exception>(() => VectorSampleKernels.Launch.ReverseQuads(emulator, new Dim3(1), new Dim3(VectorSampleKernels.GroupSize),
            bx.View<float>().SubView(1, 4 * n - 4), by.View<float>(), 2));
        var fault = e as KernelFaultException ?? e.InnerException as KernelFaultException;
        Assert.True(fault is not null, e.ToString());
        Assert.Contains("not 16-byte aligned", fault!.Message);
    }

    [BackendFact("opencl")]
    public void ReverseQuads_PoCL_MatchesReference()
    {
        var (x, n, grid) = Case();
        var y = new float[x.Length];
        Engine.Tests.Kernels.KernelRunner.OpenCL.Run(VectorSampleKernels.Launch.ReverseQuadsSource, grid, new Dim3(VectorSampleKernels.GroupSize), x, y, n);
        Assert.Equal(Reference(x, n), y);
    }

    [BackendTheory("nvrtc")]
    [InlineData(70)]
    [InlineData(80)]
    [InlineData(90)]
    public void ReverseQuads_Nvrtc_NoStackFrame(int arch)
    {
        var kernel = VectorSampleKernels.Launch.ReverseQuadsSource;
        var module = Nvrtc.Compile(kernel.CudaSource, $"sm_{arch}", programName: "ReverseQuads.cu");
        var usage = Assert.Single(module.Kernels, k => k.Kernel == kernel.EntryPoint);
        Assert.True(usage.StackFrameBytes == 0 && usage.SpillBytes == 0, usage.ToString());
    }
}
