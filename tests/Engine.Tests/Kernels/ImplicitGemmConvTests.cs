using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.Kernels;

/// <summary>
/// The implicit-GEMM convolution kernels (kernels/Conv/ImplicitGemmKernels.cs), the depthwise kernels
/// (kernels/Conv/DepthwiseConvKernels.cs; depthwise shapes also through the implicit-GEMM kernels) and the device
/// conv2d built on them, run on a device: forward, backward-data and backward-weight against a float64 reference written here
/// (plain loops) and against the CPU conv2d on the same float32 inputs; then Tensor.Conv2d's gradients through
/// autograd on the device against the CPU's, including a gradient of a gradient. Shapes are modest (the emulator
/// runs one OS thread per GPU thread) but odd, and cover 1×1, 3×3 stride 2, padding, dilation, asymmetric
/// windows, groups, depthwise (multiplier 1 and 2), batch 1, more than one 64-wide tile in each direction,
/// several splits of the weight-gradient reduction, an empty batch, and non-contiguous (strided, channels-last)
/// inputs and output gradients.
/// </summary>
internal static class ImplicitGemmConvChecks
{
    /// <summary>One convolution: input [N, C, H, W], weight [Cout, C/G, KH, KW]; stride, padding, dilation (h, w); groups; bias; input layout.</summary>
    public readonly record struct Case(long N, long C, long H, long W, long Cout, int KH, int KW, (int, int) S, (int, int) P, (int, int) D, int G, bool Bias, string Layout = "contiguous")
    {
        public override string ToString()
            => $"x [{N}, {C}, {H}, {W}] w [{Cout}, {C / G}, {KH}, {KW}] s{S} p{P} d{D} g{G}{(Bias ? " bias" : "")} {Layout}";
    }

    public static readonly Case[] Cases =
    [
        new(2, 3, 7, 6, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1, true),                    // odd sizes, Kg = 27 (two K steps)
        new(1, 4, 5, 5, 6, 1, 1, (1, 1), (0, 0), (1, 1), 1, false),                   // 1×1, batch 1
        new(2, 3, 9, 8, 4, 3, 3, (2, 2), (1, 1), (1, 1), 1, true, "strided"),         // 3×3 stride 2, padding, strided input
        new(1, 2, 8, 9, 3, 3, 2, (1, 2), (2, 1), (2, 1), 1, true, "channels-last"),   // dilation, asymmetric everything
        new(2, 4, 6, 7, 4, 3, 3, (1, 1), (1, 1), (1, 1), 4, true),                    // depthwise
        new(1, 3, 5, 6, 6, 3, 3, (2, 1), (1, 0), (1, 2), 3, false, "strided"),        // depthwise, channel multiplier 2
        new(1, 4, 6, 6, 6, 3, 3, (2, 2), (0, 0), (1, 1), 2, true),                    // 2 groups
        new(1, 5, 9, 9, 70, 3, 3, (1, 1), (0, 0), (1, 1), 1, true),                   // 2 row tiles (Cout 70), 1 column tile
        new(1, 8, 10, 9, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1, false),                  // Kg = 72 > 64: 2 column tiles of dW; N·L = 90 > 64
        new(0, 3, 5, 5, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1, true),                    // empty batch: y empty, dW = 0
    ];

    private static Random Rng(string what) => new(TestUtil.StableSeed("implicit-gemm-" + what));

    /// <summary><paramref name="x"/> (CPU, contiguous) on the device in the case's layout.</summary>
    private static Tensor OnDevice(Tensor x, Device device, string layout)
    {
        switch (layout)
        {
            case "strided":
            {
                var view = TestUtil.StridedOn(x, device);
                Assert.True(view.NumEl <= 1 || !view.IsContiguous);
                return view;
            }
            case "channels-last":
            {
                using var nhwc = x.Permute(0, 2, 3, 1).Contiguous();
                using var moved = nhwc.To(device);
                var view = moved.Permute(0, 3, 1, 2);
                Assert.True(view.NumEl <= 1 || !view.IsContiguous);
                return view;
            }
            default:
                return x.To(device);
        }
    }

    /// <summary>The values of <paramref name="t"/> (any device) as float64, row-major.</summary>
    private static double[] D(Tensor t)
    {
        var cpu = t.To(Device.Cpu); // t itself when it is on the CPU already
        try
        {
            using var d = cpu.To(DType.Float64);
            return d.ToArray<double>();
        }
        finally
        {
            if (!ReferenceEquals(cpu, t)) cpu.Dispose();
        }
    }

    /// <summary>y = conv2d(x, w) + b in float64 (plain loops).</summary>
    public static double[] ReferenceForward(Case c, double[] x, double[] w, double[]? b, long oh, long ow)
    {
        long cpg = c.C / c.G, coutG = c.Cout / c.G;
        var y = new double[c.N * c.Cout * oh * ow];
        for (long n = 0; n < c.N; n++)
        for (long co = 0; co < c.Cout; co++)
        for (long oy = 0; oy < oh; oy++)
        for (long ox = 0; ox < ow; ox++)
        {
            double acc = b is null ? 0 : b[co];
            long g = co / coutG;
            for (long ci = 0; ci < cpg; ci++)
            for (int r = 0; r < c.KH; r++)
            for (int s = 0; s < c.KW; s++)
            {
                long iy = oy * c.S.Item1 - c.P.Item1 + r * c.D.Item1, ix = ox * c.S.Item2 - c.P.Item2 + s * c.D.Item2;
                if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
                acc += w[((co * cpg + ci) * c.KH + r) * c.KW + s] * x[((n * c.C + g * cpg + ci) * c.H + iy) * c.W + ix];
            }
            y[((n * c.Cout + co) * oh + oy) * ow + ox] = acc;
        }
        return y;
    }

    /// <summary>dx and dw of Σ dy·conv2d(x, w) in float64: every tap's product scattered (the adjoint written directly).</summary>
    public static (double[] Dx, double[] Dw) ReferenceBackward(Case c, double[] x, double[] w, double[] dy, long oh, long ow)
    {
        long cpg = c.C / c.G, coutG = c.Cout / c.G;
        var dx = new double[c.N * c.C * c.H * c.W];
        var dw = new double[c.Cout * cpg * c.KH * c.KW];
        for (long n = 0; n < c.N; n++)
        for (long co = 0; co < c.Cout; co++)
        for (long oy = 0; oy < oh; oy++)
        for (long ox = 0; ox < ow; ox++)
        {
            double g = dy[((n * c.Cout + co) * oh + oy) * ow + ox];
            long grp = co / coutG;
            for (long ci = 0; ci < cpg; ci++)
            for (int r = 0; r < c.KH; r++)
            for (int s = 0; s < c.KW; s++)
            {
                long iy = oy * c.S.Item1 - c.P.Item1 + r * c.D.Item1, ix = ox * c.S.Item2 - c.P.Item2 + s * c.D.Item2;
                if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
                long xi = ((n * c.C + grp * cpg + ci) * c.H + iy) * c.W + ix, wi = ((co * cpg + ci) * c.KH + r) * c.KW + s;
                dx[xi] += w[wi] * g;
                dw[wi] += x[xi] * g;
            }
        }
        return (dx, dw);
    }

    /// <summary>
    /// The three kernels through the recorded device ops (no autograd): forward (with bias), backward-data and
    /// backward-weight (default split, and forced to 16-long splits of the reduction) against the float64 reference
    /// and the CPU conv2d (its forward and its autograd gradients) on the same float32 inputs.
    /// </summary>
    public static void KernelsMatchReferenceAndCpu(Device device)
    {
        foreach (var c in Cases)
        {
            string what = c.ToString();
            var rng = Rng(what);
            using var x = TestUtil.Random(rng, [c.N, c.C, c.H, c.W]);
            using var w = TestUtil.Random(rng, [c.Cout, c.C / c.G, c.KH, c.KW], lo: -0.5, hi: 0.5);
            using var b = TestUtil.Random(rng, [c.Cout]);
            // CPU conv2d and its gradients for a random output gradient.
            using var xc = x.Detach().RequiresGrad_();
            using var wcpu = w.Detach().RequiresGrad_();
            using var y = xc.Conv2d(wcpu, c.Bias ? b : null, c.S, c.P, c.D, c.G);
            long oh = y.Shape[2], ow = y.Shape[3];
            using var dy = TestUtil.Random(rng, y.ShapeArray());
            using (var l = y.Mul(dy).Sum()) l.Backward();
            var xd = D(x); var wd = D(w);
            var yRef = ReferenceForward(c, xd, wd, c.Bias ? D(b) : null, oh, ow);
            var (dxRef, dwRef) = ReferenceBackward(c, xd, wd, D(dy), oh, ow);

            using var xDev = OnDevice(x, device, c.Layout);
            using var wDev = w.To(device);
            using var bDev = OnDevice(b, device, c.Layout == "contiguous" ? "contiguous" : "strided");
            using var dyDev = OnDevice(dy, device, c.Layout);
            var s = KernelDispatch.ConvShapeOf("conv2d", xDev, wDev, c.S, c.P, c.D, c.G);
            Assert.True(ImplicitGemmPlan.Fits(s));
            using var yDev = KernelDispatch.ConvForwardOp(xDev, wDev, c.Bias ? bDev : null, s);
            using var dxDev = KernelDispatch.ConvBackwardDataOp(dyDev, wDev, s);
            using var dwDev = KernelDispatch.ConvBackwardWeightOp(xDev, dyDev, s);
            using var dwSplit = KernelDispatch.ConvBackwardWeightOp(xDev, dyDev, s, qPerSplit: 16);
            Assert.Equal(device, yDev.Device);
            Assert.Equal(y.ShapeArray(), yDev.ShapeArray());
            Assert.Equal(x.ShapeArray(), dxDev.ShapeArray());
            Assert.Equal(w.ShapeArray(), dwDev.ShapeArray());

            // float32 sums of ≤ 80 products of |a|, |b| ≤ 1 (dW: ≤ 180 products): a few 1e-6 absolute.
            TestUtil.AssertClose(yRef, D(yDev), 5e-5, 5e-5, "forward vs float64: " + what);
            TestUtil.AssertClose(dxRef, D(dxDev), 5e-5, 5e-5, "backward-data vs float64: " + what);
            TestUtil.AssertClose(dwRef, D(dwDev), 1e-4, 5e-5, "backward-weight vs float64: " + what);
            TestUtil.AssertClose(dwRef, D(dwSplit), 1e-4, 5e-5, "backward-weight (16-long splits) vs float64: " + what);
            TestUtil.AssertClose(D(y), D(yDev), 5e-5, 5e-5, "forward vs CPU conv2d: " + what);
            TestUtil.AssertClose(D(xc.Grad!), D(dxDev), 5e-5, 5e-5, "backward-data vs CPU conv2d: " + what);
            TestUtil.AssertClose(D(wcpu.Grad!), D(dwDev), 1e-4, 5e-5, "backward-weight vs CPU conv2d: " + what);
            if (s.IsDepthwise)
            {
                // The ops above ran the direct depthwise kernels; the implicit-GEMM kernels take the same shapes.
                using var yGemm = KernelDispatch.ConvForwardOp(xDev, wDev, c.Bias ? bDev : null, s, depthwiseKernels: false);
                using var dxGemm = KernelDispatch.ConvBackwardDataOp(dyDev, wDev, s, depthwiseKernels: false);
                using var dwGemm = KernelDispatch.ConvBackwardWeightOp(xDev, dyDev, s, qPerSplit: 32, depthwiseKernels: false);
                TestUtil.AssertClose(yRef, D(yGemm), 5e-5, 5e-5, "forward (implicit GEMM) vs float64: " + what);
                TestUtil.AssertClose(dxRef, D(dxGemm), 5e-5, 5e-5, "backward-data (implicit GEMM) vs float64: " + what);
                TestUtil.AssertClose(dwRef, D(dwGemm), 1e-4, 5e-5, "backward-weight (implicit GEMM) vs float64: " + what);
            }
        }
    }

    /// <summary>
    /// Tensor.Conv2d on the device (which takes the implicit-GEMM path) through autograd against the CPU: value,
    /// input/weight/bias gradients for a weighted sum and for a plain sum (an expanded, all-zero-stride output
    /// gradient read in place), and a second-order gradient (d/dw of Σ v·dx with createGraph).
    /// </summary>
    public static void AutogradMatchesCpu(Device device)
    {
        foreach (var c in new[] { Cases[0], Cases[2], Cases[5], Cases[6] })
        {
            string what = c.ToString();
            var rng = Rng("autograd " + what);
            using var x = TestUtil.Random(rng, [c.N, c.C, c.H, c.W]);
            using var w = TestUtil.Random(rng, [c.Cout, c.C / c.G, c.KH, c.KW], lo: -0.5, hi: 0.5);
            using var b = TestUtil.Random(rng, [c.Cout]);
            foreach (bool plainSum in new[] { false, true })
            {
                using var xc = x.Detach().RequiresGrad_();
                using var wc = w.Detach().RequiresGrad_();
                using var bc = b.Detach().RequiresGrad_();
                using var xDevView = OnDevice(x, device, c.Layout);
                using var xd = xDevView.Detach().RequiresGrad_();
                using var wDev = w.To(device);
                using var wd = wDev.Detach().RequiresGrad_();
                using var bDev = b.To(device);
                using var bd = bDev.Detach().RequiresGrad_();
                using var y = xc.Conv2d(wc, bc, c.S, c.P, c.D, c.G);
                using var yd = xd.Conv2d(wd, bd, c.S, c.P, c.D, c.G);
                Assert.Equal(device, yd.Device);
                TestUtil.AssertClose(D(y), D(yd), 5e-5, 5e-5, $"conv2d value: {what}");
                using var v = TestUtil.Random(rng, y.ShapeArray());
                using var vd = v.To(device);
                using (var l = plainSum ? y.Sum() : y.Mul(v).Sum()) l.Backward();
                using (var l = plainSum ? yd.Sum() : yd.Mul(vd).Sum()) l.Backward();
                string how = plainSum ? "sum" : "weighted sum";
                TestUtil.AssertClose(D(xc.Grad!), D(xd.Grad!), 1e-4, 1e-4, $"dx ({how}): {what}");
                TestUtil.AssertClose(D(wc.Grad!), D(wd.Grad!), 2e-4, 1e-4, $"dw ({how}): {what}");
                TestUtil.AssertClose(D(bc.Grad!), D(bd.Grad!), 2e-4, 1e-4, $"dbias ({how}): {what}");
            }

            // Second order: g(w) = Σ u·dx(w) where dx = ∂(Σ v·conv2d(x, w))/∂x, differentiated again with respect to w.
            {
                using var xc = x.Detach().RequiresGrad_();
                using var wc = w.Detach().RequiresGrad_();
                using var xd0 = x.To(device);
                using var xd = xd0.Detach().RequiresGrad_();
                using var wd0 = w.To(device);
                using var wd = wd0.Detach().RequiresGrad_();
                using var y = xc.Conv2d(wc, null, c.S, c.P, c.D, c.G);
                using var yd = xd.Conv2d(wd, null, c.S, c.P, c.D, c.G);
                using var v = TestUtil.Random(rng, y.ShapeArray());
                using var vd = v.To(device);
                using var u = TestUtil.Random(rng, x.ShapeArray());
                using var ud = u.To(device);
                using var ly = y.Mul(v).Sum();
                using var lyd = yd.Mul(vd).Sum();
                var gx = Autograd.Grad(ly, xc, createGraph: true);
                var gxd = Autograd.Grad(lyd, xd, createGraph: true);
                TestUtil.AssertClose(D(gx), D(gxd), 1e-4, 1e-4, $"dx with createGraph: {what}");
                using (var l2 = gx.Mul(u).Sum()) l2.Backward();
                using (var l2 = gxd.Mul(ud).Sum()) l2.Backward();
                TestUtil.AssertClose(D(wc.Grad!), D(wd.Grad!), 2e-4, 1e-4, $"d/dw of Σ u·dx: {what}");
                gx.Dispose();
                gxd.Dispose();
            }
        }
    }
}

/// <summary>The implicit-GEMM convolution on the emulator (always available).</summary>
public class ImplicitGemmConvEmulatorTests
{
    private static readonly Device Emulator = Device.Parse("emulator");

    [Fact] public void KernelsMatchReferenceAndCpu() => ImplicitGemmConvChecks.KernelsMatchReferenceAndCpu(Emulator);
    [Fact] public void AutogradMatchesCpu() => ImplicitGemmConvChecks.AutogradMatchesCpu(Emulator);
}

/// <summary>The implicit-GEMM convolution on OpenCL (PoCL in CI): the translated OpenCL C, run.</summary>
public class ImplicitGemmConvOpenCLTests
{
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    [BackendFact("opencl")] public void KernelsMatchReferenceAndCpu() => ImplicitGemmConvChecks.KernelsMatchReferenceAndCpu(OpenCL);
    [BackendFact("opencl")] public void AutogradMatchesCpu() => ImplicitGemmConvChecks.AutogradMatchesCpu(OpenCL);
}

/// <summary>The implicit-GEMM convolution on a CUDA GPU (where one exists; skipped with the reason elsewhere).</summary>
public class ImplicitGemmConvCudaTests
{
    private static readonly Device Cuda = Device.Parse("cuda:0");

    [BackendFact("cuda")] public void KernelsMatchReferenceAndCpu() => ImplicitGemmConvChecks.KernelsMatchReferenceAndCpu(Cuda);
    [BackendFact("cuda")] public void AutogradMatchesCpu() => ImplicitGemmConvChecks.AutogradMatchesCpu(Cuda);
}

/// <summary>Host-side plan of the implicit-GEMM kernels: index limits, split choice, launch shapes for the report.</summary>
public class ImplicitGemmPlanTests
{
    private static Engine.Tensors.Cpu.ConvKernels.Shape Shape(long n, long c, long h, long w, long cout, int k, int groups = 1)
    {
        var geo = new ConvGeometry(k, k, 1, 1, k / 2, k / 2, 1, 1);
        var (oh, ow) = geo.OutputSize("test", h, w);
        return new Engine.Tensors.Cpu.ConvKernels.Shape(n, c, h, w, cout, oh, ow, groups, geo);
    }

    [Fact]
    public void Fits_RefusesShapesPastIntIndexing()
    {
        Assert.True(ImplicitGemmPlan.Fits(Shape(64, 64, 56, 56, 64, 3)));
        Assert.False(ImplicitGemmPlan.Fits(Shape(1024, 256, 128, 128, 256, 3))); // 2^32 input elements: the Im2Col fallback refuses it too
    }

    [Fact]
    public void Splits_CoverTheReductionInOrderedChunks()
    {
        // ResNet-style 3×3, 64 → 64 channels, batch 32 at 56×56: 1 × 9 tiles of dW, N·L = 100352.
        var s = Shape(32, 64, 56, 56, 64, 3);
        var p = ImplicitGemmPlan.Create(s, null, null, null);
        Assert.True(p.Splits > 1);
        Assert.Equal(0, p.QPerSplit % ImplicitGemmKernels.TileK);
        Assert.True((long)p.Splits * p.QPerSplit >= s.N * s.L && (long)(p.Splits - 1) * p.QPerSplit < s.N * s.L);
        Assert.True(p.QPerSplit >= ImplicitGemmPlan.MinQPerSplit);
        var grid = ImplicitGemmPlan.BackwardWeightGrid(p);
        Assert.Equal(p.Splits, grid.Z);
        // A small reduction is not split.
        Assert.Equal(1, ImplicitGemmPlan.Create(Shape(1, 3, 8, 8, 4, 3), null, null, null).Splits);
        // Forced splits are rounded up to TileK.
        var forced = ImplicitGemmPlan.Create(Shape(2, 3, 7, 6, 5, 3), null, null, null, qPerSplit: 5);
        Assert.Equal(16, forced.QPerSplit);
        Assert.Equal(6, forced.Splits); // 84 / 16
    }

    [Fact]
    public void ReportKnowsTheLaunchShapes()
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(Tensor).Module.ModuleHandle);
        var kernels = Engine.Runtime.Kernels.KernelRegistry.All
            .Where(k => k.DeclaringType is "Engine.Tensors.Kernels.ImplicitGemmKernels" or "Engine.Tensors.Kernels.DepthwiseConvKernels").ToList();
        Assert.Equal(["ConvBackwardData", "ConvBackwardWeight", "ConvForward", "DepthwiseBackwardData", "DepthwiseBackwardWeight", "DepthwiseForward", "SumSplits"],
            kernels.Select(k => k.EntryPoint).Order().ToArray());
        foreach (var k in kernels)
        {
            int expected = k.EntryPoint.StartsWith("Conv", StringComparison.Ordinal)
                ? ImplicitGemmKernels.Threads * ImplicitGemmKernels.Threads
                : k.EntryPoint == "SumSplits" ? ImplicitGemmKernels.SumGroupSize : DepthwiseConvKernels.GroupSize;
            Assert.Equal(new KernelLaunchShape(expected, 0, LaunchShapeOrigin.Fixed), Engine.Cli.KernelsCommand.LaunchShape(k));
        }
    }
}
