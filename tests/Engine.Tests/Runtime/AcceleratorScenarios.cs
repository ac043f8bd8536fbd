using Engine.Runtime;
using Engine.Runtime.Kernels;

namespace Engine.Tests.Runtime;

/// <summary>
/// Kernel runs written once against <see cref="Accelerator"/>: each checks its result against a plain C#
/// reference and returns it, so callers can also compare backends with each other.
/// </summary>
internal static class AcceleratorScenarios
{
    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>1000 elements in groups of 128 (the last group is partial).</summary>
    public static float[] VectorAdd(Accelerator acc)
    {
        const int n = 1000, group = 128;
        float[] a = Random(n, 1), b = Random(n, 2);
        using var da = acc.Allocate<float>(a);
        using var db = acc.Allocate<float>(b);
        using var dy = acc.Allocate(n * sizeof(float), zero: true);
        AcceleratorKernels.Launch.Add(acc, (n + group - 1) / group, group, da.View<float>(), db.View<float>(), dy.View<float>());
        var y = acc.ToArray<float>(dy);
        for (int i = 0; i < n; i++) Assert.Equal(a[i] + b[i], y[i]);
        return y;
    }

    /// <summary>A float64 shared-memory tree reduction over 300 elements (10 groups of 32, the last partial).</summary>
    public static double[] GroupSum(Accelerator acc)
    {
        const int n = 300, group = AcceleratorKernels.SumGroup, groups = (n + group - 1) / group;
        var x = Random(n, 3).Select(v => (double)v).ToArray();
        using var dx = acc.Allocate<double>(x);
        using var ds = acc.Allocate(groups * sizeof(double));
        AcceleratorKernels.Launch.GroupSum(acc, groups, group, dx.View<double>(), ds.View<double>());
        var sums = acc.ToArray<double>(ds);
        for (int g = 0; g < groups; g++)
            Assert.Equal(x.Skip(g * group).Take(group).Sum(), sums[g], 1e-12);
        return sums;
    }

    /// <summary>Views at offsets (SubView on the host) and a SubView inside the kernel.</summary>
    public static long[] SubViews(Accelerator acc)
    {
        const int n = 50, m = 37, xOffset = 5, yOffset = 3;
        var x = Enumerable.Range(0, n).Select(i => 1000L * i).ToArray();
        using var dx = acc.Allocate<long>(x);
        using var dy = acc.Allocate<long>(Enumerable.Repeat(-1L, n).ToArray());
        using var dm = acc.Allocate<long>([-1L]);
        var xs = dx.View<long>().SubView(xOffset, m);
        var ys = dy.View<long>().SubView(yOffset, m);
        AcceleratorKernels.Launch.AddIndex(acc, (m + 15) / 16, 16, xs, ys, dm.View<long>());
        var y = acc.ToArray<long>(dy);
        for (int i = 0; i < n; i++)
            Assert.Equal(i >= yOffset && i < yOffset + m ? x[xOffset + i - yOffset] + (i - yOffset) : -1L, y[i]);
        long marker = acc.ToArray<long>(dm)[0];
        Assert.Equal(x[xOffset + m / 2], marker);
        return [.. y, marker];
    }

    /// <summary>A bool parameter between an int and an int, both ways.</summary>
    public static int[] BoolParameter(Accelerator acc)
    {
        const int n = 70;
        var x = Enumerable.Range(0, n).Select(i => i - 30).ToArray();
        using var dx = acc.Allocate<int>(x);
        using var dy = acc.Allocate(n * sizeof(int));
        var result = new List<int>();
        foreach (bool negate in new[] { true, false })
        {
            AcceleratorKernels.Launch.ScaleSigned(acc, (n + 31) / 32, 32, dx.View<int>(), dy.View<int>(), 3, negate, 7);
            var y = acc.ToArray<int>(dy);
            for (int i = 0; i < n; i++) Assert.Equal((negate ? -3 : 3) * x[i] + 7, y[i]);
            result.AddRange(y);
        }
        return [.. result];
    }

    /// <summary>Dynamic shared memory sized at launch (groups of 40).</summary>
    public static float[] DynamicShared(Accelerator acc)
    {
        const int group = 40, groups = 3, n = group * groups;
        var x = Random(n, 4);
        using var dx = acc.Allocate<float>(x);
        using var dy = acc.Allocate(n * sizeof(float));
        AcceleratorKernels.Launch.RotateGroup(acc, groups, group, dx.View<float>(), dy.View<float>(), dynamicSharedBytes: group * sizeof(float));
        var y = acc.ToArray<float>(dy);
        for (int i = 0; i < n; i++) Assert.Equal(x[i / group * group + (i % group + 1) % group], y[i]);
        return y;
    }

    /// <summary>Arguments that do not match the kernel's parameters: count, kind, element type, value type.</summary>
    public static void ArgumentErrors(Accelerator acc)
    {
        using var buffer = acc.Allocate(64 * sizeof(float), zero: true);
        var f = buffer.View<float>();
        var i = buffer.View<int>();
        var source = AcceleratorKernels.Launch.ScaleSignedSource;

        var e = Assert.Throws<ArgumentException>(() => acc.Launch(source, 1, 32, 0, [i, i, 3, true]));
        Assert.Contains("Launch ScaleSigned", e.Message);
        Assert.Contains("4 argument(s) given; the kernel takes 5", e.Message);

        e = Assert.Throws<ArgumentException>(() => acc.Launch(source, 1, 32, 0, [i, 5, 3, true, 7]));
        Assert.Contains("argument 1 (y) must be an ArrayView<Int32>; got a Int32", e.Message);

        e = Assert.Throws<ArgumentException>(() => acc.Launch(source, 1, 32, 0, [f, i, 3, true, 7]));
        Assert.Contains("argument 0 (x) must be an ArrayView<Int32>; got an ArrayView<Single>", e.Message);

        e = Assert.Throws<ArgumentException>(() => acc.Launch(source, 1, 32, 0, [i, i, 3.0, true, 7]));
        Assert.Contains("argument 2 (scale) must be a Int32 value; got a Double", e.Message);

        e = Assert.Throws<ArgumentException>(() => acc.Launch(source, 1, 32, 0, [i, i, 3, 1, 7]));
        Assert.Contains("argument 3 (negate) must be a Boolean value", e.Message);

        e = Assert.Throws<ArgumentException>(() => acc.Launch(source, 0, 32, 0, [i, i, 3, true, 7]));
        Assert.Contains("must be positive", e.Message);
    }
}
