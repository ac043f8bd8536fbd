using Engine.Runtime;
using Engine.Runtime.Kernels;
using Xunit.Abstractions;

namespace Engine.Tests.Runtime;

/// <summary>The hand-written OpenCL bindings and <see cref="OpenCLAccelerator"/>, run on PoCL in CI.</summary>
public class OpenCLTests(ITestOutputHelper output)
{
    private const string VectorAdd = """
        __kernel void vector_add(__global const float* a, __global const float* b, __global float* y, int n)
        {
            int i = get_global_id(0);
            if (i < n) y[i] = a[i] + b[i];
        }
        """;

    /// <summary>Each group sums its slice in __local memory (tree reduction with barriers); scaled by a double and offset by a long to exercise those argument types.</summary>
    private const string GroupSum = """
        __kernel void group_sum(__global const float* x, __global float* sums, int n, __local float* scratch, double scale, long offset)
        {
            int t = get_local_id(0), i = get_global_id(0);
            scratch[t] = i < n ? x[i] : 0.0f;
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int stride = get_local_size(0) / 2; stride > 0; stride /= 2)
            {
                if (t < stride) scratch[t] += scratch[t + stride];
                barrier(CLK_LOCAL_MEM_FENCE);
            }
            if (t == 0) sums[get_group_id(0)] = (float)(scratch[0] * scale + (double)offset);
        }
        """;

    [BackendFact("opencl")]
    public void ListsDevicesWithTheirLimits()
    {
        var devices = OpenCLDevices.List();
        Assert.NotEmpty(devices);
        foreach (var d in devices) output.WriteLine(d.ToString());
        Assert.Null(OpenCLDevices.MissingReason);
        var first = devices[0];
        Assert.False(string.IsNullOrWhiteSpace(first.Name));
        Assert.False(string.IsNullOrWhiteSpace(first.PlatformName));
        Assert.True(first.ComputeUnits >= 1);
        Assert.True(first.MaxWorkGroupSize >= 1);
        Assert.True(first.LocalMemBytes > 0);
        Assert.True(first.GlobalMemBytes > 0);
        Assert.Equal(Enumerable.Range(0, devices.Count), devices.Select(d => d.Index));
    }

    [BackendFact("opencl")]
    public void VectorAddMatchesReferenceForSizesNotMultipleOfTheGroup()
    {
        using var cl = new OpenCLAccelerator();
        var rng = new Random(1);
        foreach (int n in new[] { 1, 63, 64, 1000, 4097 })
        {
            var a = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
            var b = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
            using var da = cl.Allocate<float>(a);
            using var db = cl.Allocate<float>(b);
            using var dy = cl.Allocate(n * sizeof(float), zero: true);
            const int group = 64;
            cl.Launch(VectorAdd, "vector_add", (n + group - 1) / group, group, da, db, dy, n);
            var y = cl.ToArray<float>(dy);
            for (int i = 0; i < n; i++) Assert.Equal(a[i] + b[i], y[i]);
        }
    }

    [BackendFact("opencl")]
    public void LocalMemoryReductionWithBarriersMatchesReference()
    {
        using var cl = new OpenCLAccelerator();
        var rng = new Random(2);
        foreach (int group in new[] { 32, 128 })
        foreach (int n in new[] { 5, group, 3 * group + 7, 10_001 })
        {
            var x = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
            int groups = (n + group - 1) / group;
            using var dx = cl.Allocate<float>(x);
            using var dsums = cl.Allocate(groups * sizeof(float));
            cl.Launch(GroupSum, "group_sum", groups, group, dx, dsums, n, KernelArg.Local(group * sizeof(float)), 0.5, 3L);
            var sums = cl.ToArray<float>(dsums);
            for (int g = 0; g < groups; g++)
            {
                double reference = 0; // float64 reference of the group's slice
                for (int i = g * group; i < Math.Min(n, (g + 1) * group); i++) reference += x[i];
                Assert.Equal(reference * 0.5 + 3, sums[g], 1e-4);
            }
        }
    }

    [BackendFact("opencl")]
    public void TwoDimensionalLaunchCoversAMatrixNotMultipleOfTheGroup()
    {
        const string transpose = """
            __kernel void transpose(__global const float* x, __global float* y, int rows, int cols)
            {
                int c = get_global_id(0), r = get_global_id(1);
                if (r < rows && c < cols) y[c * rows + r] = x[r * cols + c];
            }
            """;
        using var cl = new OpenCLAccelerator();
        const int rows = 37, cols = 70;
        var x = Enumerable.Range(0, rows * cols).Select(i => (float)i).ToArray();
        using var dx = cl.Allocate<float>(x);
        using var dy = cl.Allocate(rows * cols * sizeof(float));
        var group = new Dim3(16, 8);
        cl.Launch(transpose, "transpose", new Dim3((cols + 15) / 16, (rows + 7) / 8), group, dx, dy, rows, cols);
        var y = cl.ToArray<float>(dy);
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            Assert.Equal(x[r * cols + c], y[c * rows + r]);
    }

    [BackendFact("opencl")]
    public void RejectsMemoryOfAnotherDevice()
    {
        using var cl = new OpenCLAccelerator();
        using var host = CpuAllocator.Shared.Allocate(16);
        var e = Assert.Throws<ArgumentException>(() => cl.Launch(VectorAdd, "vector_add", 1, 4, host, host, host, 4));
        Assert.Contains("arg 0", e.Message);
        Assert.Contains("not memory of this OpenCL device", e.Message);
    }

    [BackendFact("opencl")]
    public void ProgramsAreCachedBySource()
    {
        using var cl = new OpenCLAccelerator();
        Assert.Same(cl.Build(VectorAdd), cl.Build(VectorAdd));
        Assert.NotSame(cl.Build(VectorAdd), cl.Build(VectorAdd, "-cl-fast-relaxed-math"));
    }

    [BackendFact("opencl")]
    public void BuildErrorCarriesTheLogWithTheLine()
    {
        using var cl = new OpenCLAccelerator();
        const string broken = "__kernel void k(__global float* y)\n{\n    y[0] = undeclared_thing;\n}\n";
        var e = Assert.Throws<OpenCLException>(() => cl.Build(broken));
        output.WriteLine(e.Message);
        Assert.Equal("CL_BUILD_PROGRAM_FAILURE", e.ErrorName);
        Assert.Equal("clBuildProgram", e.Call);
        Assert.Contains("undeclared_thing", e.BuildLog);
        Assert.Contains(":3:", e.Message); // the offending line
    }

    [BackendFact("opencl")]
    public void LineDirectivesPointBuildErrorsAtTheCSharpSource()
    {
        const string generated = "#line 17 \"kernels/Reduce/Sum.cs\"\n__kernel void k(__global float* y) { y[0] = missing_name; }\n";
        using var cl = new OpenCLAccelerator();
        var e = Assert.Throws<OpenCLException>(() => cl.Build(generated));
        output.WriteLine(e.BuildLog);
        Assert.Contains("kernels/Reduce/Sum.cs:17", e.BuildLog);
    }

    [BackendFact("opencl")]
    public void MemsetFillsEveryByte()
    {
        using var cl = new OpenCLAccelerator();
        using var buffer = cl.Allocate(13);
        cl.Memset(buffer, 0xAB);
        Assert.All(cl.ToArray<byte>(buffer), b => Assert.Equal(0xAB, b));
    }

    [BackendFact("opencl")]
    public void BadArgumentsSurfaceTheClErrorName()
    {
        using var cl = new OpenCLAccelerator();
        using var buffer = cl.Allocate(16);
        // Too few arguments: the launch reports CL_INVALID_KERNEL_ARGS.
        var missing = Assert.Throws<OpenCLException>(() => cl.Launch(VectorAdd, "vector_add", 1, 4, buffer, buffer));
        output.WriteLine(missing.Message);
        Assert.Equal("CL_INVALID_KERNEL_ARGS", missing.ErrorName);
        Assert.StartsWith("clEnqueueNDRangeKernel", missing.Call);
        // A float where a buffer is expected has the wrong size: CL_INVALID_ARG_SIZE, naming the argument.
        var wrongSize = Assert.Throws<OpenCLException>(() => cl.Launch(VectorAdd, "vector_add", 1, 4, 1.5f, buffer, buffer, 4));
        output.WriteLine(wrongSize.Message);
        Assert.Contains("CL_INVALID_ARG", wrongSize.ErrorName);
        Assert.Contains("arg 0", wrongSize.Message);
        // An unknown kernel name.
        var name = Assert.Throws<OpenCLException>(() => cl.Launch(VectorAdd, "no_such_kernel", 1, 4));
        Assert.Equal("CL_INVALID_KERNEL_NAME", name.ErrorName);
    }

    [BackendFact("opencl")]
    public void CopiesCheckBoundsAndZeroFill()
    {
        using var cl = new OpenCLAccelerator();
        using var buffer = cl.Allocate(8 * sizeof(int), zero: true);
        Assert.All(cl.ToArray<int>(buffer), v => Assert.Equal(0, v));
        cl.CopyToDevice<int>(buffer, new[] { 7, 8 }, offsetBytes: 4 * sizeof(int));
        Assert.Equal(new[] { 0, 0, 0, 0, 7, 8, 0, 0 }, cl.ToArray<int>(buffer));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => cl.CopyToDevice<int>(buffer, new int[9]));
        Assert.Contains("CopyToDevice", e.Message);
        Assert.Throws<OpenCLException>(() => new OpenCLAccelerator(1000));
    }
}
