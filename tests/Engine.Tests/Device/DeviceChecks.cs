using Engine.Runtime;
using Engine.Tensors;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.DeviceTensors;

/// <summary>
/// The checks of tensors on an accelerator device, written once and run on every device
/// (EmulatorTensorTests, OpenCLTensorTests): each dispatched op on a device tensor must equal the
/// same op on the CPU (the CPU-native twin, itself tested against float64 references), on odd
/// shapes (not multiples of the group sizes), broadcasting, and non-contiguous views. Shapes stay
/// small: the emulator runs one OS thread per GPU thread.
/// </summary>
internal static class DeviceChecks
{
    // Kernels accumulate in float like the CPU ops but in another order; exp/log/tanh may differ by ulps.
    private const double Tol = 2e-5;

    private static Random Rng(string name) => new(TestUtil.StableSeed(name));


    private static void Same(Tensor expected, Tensor actual, string what, double tol = Tol)
    {
        Assert.True(ShapeUtil.SameShape(expected.Shape, actual.Shape), $"{what}: shape {ShapeUtil.Format(actual.Shape)}, expected {ShapeUtil.Format(expected.Shape)}");
        using var e = expected.To(DType.Float64);
        using var host = actual.To(Device.Cpu);
        TestUtil.AssertClose(e.ToArray<double>(), host, tol, tol, what);
    }

    public static void RoundTrip(Device device)
    {
        var rng = Rng("roundtrip");
        foreach (var shape in new long[][] { [], [1], [7], [3, 5], [0, 3], [2, 3, 5] })
        {
            using var x = TestUtil.Random(rng, shape);
            using var d = x.To(device);
            Assert.Equal(device, d.Device);
            Assert.True(d.IsContiguous);
            Assert.Equal(x.ToArray<float>(), d.ToArray<float>());
            using var back = d.To(Device.Cpu);
            Assert.Equal(Device.Cpu, back.Device);
            Assert.Equal(x.ToArray<float>(), back.ToArray<float>());
            if (x.NumEl == 1) Assert.Equal(x.Item<float>(), d.Item<float>());
            if (x.NumEl == 1) Assert.Equal(x.ToDouble(), d.ToDouble());
            Assert.Contains("device=" + device, d.ToString());
        }
        // Non-float dtypes move too (contiguous), and a non-contiguous CPU view moves as its values.
        using var ints = Tensor.FromArray(new long[] { 1, -2, 3, 4, 5, 6 }, 2, 3);
        using var di = ints.To(device);
        Assert.Equal(ints.ToArray<long>(), di.ToArray<long>());
        using var xt = TestUtil.Random(rng, [4, 3]);
        using var t = xt.T;
        using var dt = t.To(device);
        Assert.Equal(t.ToArray<float>(), dt.ToArray<float>());
        Assert.Same(dt, dt.To(device));
        // Factories.
        using var z = Tensor.Zeros([3, 5], DType.Float32, device);
        using var o = Tensor.Ones([3, 5], DType.Float32, device);
        using var f = Tensor.Full([2, 9], 2.5, DType.Float32, device);
        using var e = Tensor.Empty([4], DType.Float32, device);
        Assert.All(z.ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(o.ToArray<float>(), v => Assert.Equal(1f, v));
        Assert.All(f.ToArray<float>(), v => Assert.Equal(2.5f, v));
        using var ol = Tensor.OnesLike(f);
        using var zl = Tensor.ZerosLike(f);
        Assert.Equal(device, e.Device);
        Assert.Equal(device, ol.Device);
        Assert.Equal(device, zl.Device);
    }

    public static void RoundTripGradient(Device device)
    {
        var rng = Rng("to-grad");
        using var x = TestUtil.Random(rng, [3, 4]).RequiresGrad_();
        using var d = x.To(device);
        using var y = d.Mul(d);
        using var s = y.Sum();
        s.Backward();
        Assert.Equal(Device.Cpu, x.Grad!.Device);
        using var expected = x.Mul(2.0);
        Same(expected, x.Grad, "d(sum x²)/dx through To");
    }

    public static void Binary(Device device)
    {
        var rng = Rng("binary");
        var cases = new (long[] A, long[] B)[]
        {
            ([7], [7]), ([3, 5], [5]), ([2, 1, 7], [4, 1]), ([1, 9], [3, 1]), ([], [2, 3]), ([0, 3], [3]), ([17, 19], [17, 19]),
        };
        var ops = new (string Name, Func<Tensor, Tensor, Tensor> Op)[]
        {
            ("add", (a, b) => a.Add(b)), ("sub", (a, b) => a.Sub(b)), ("mul", (a, b) => a.Mul(b)), ("div", (a, b) => a.Div(b)),
        };
        foreach (var (sa, sb) in cases)
        {
            using var a = TestUtil.Random(rng, sa);
            using var b0 = TestUtil.Random(rng, sb, lo: 0.5, hi: 2);
            using var b = b0.Mul(rng.Next(2) == 0 ? 1.0 : -1.0);
            using var da = a.To(device);
            using var db = TestUtil.StridedOn(b, device);
            foreach (var (name, op) in ops)
            {
                using var expected = op(a, b);
                using var got = op(da, db);
                Assert.Equal(device, got.Device);
                Same(expected, got, $"{name} {ShapeUtil.Format(sa)} {ShapeUtil.Format(sb)}");
            }
        }
        // Scalars (C# doubles) are made on the tensor's device.
        using var x = TestUtil.Random(rng, [5, 3]);
        using var dx = TestUtil.StridedOn(x, device);
        using (var e = (2.0 - x) * 3.0 / 0.5 + 1.0)
        using (var g = (2.0 - dx) * 3.0 / 0.5 + 1.0)
            Same(e, g, "scalar arithmetic");
    }

    public static void Unary(Device device)
    {
        var rng = Rng("unary");
        var ops = new (string Name, Func<Tensor, Tensor> Op, double Lo, double Hi)[]
        {
            ("neg", x => x.Neg(), -3, 3), ("exp", x => x.Exp(), -8, 8), ("log", x => x.Log(), 1e-3, 50),
            ("tanh", x => x.Tanh(), -6, 6), ("sigmoid", x => x.Sigmoid(), -20, 20), ("relu", x => x.Relu(), -3, 3),
        };
        foreach (var shape in new long[][] { [], [7], [3, 5], [2, 3, 29], [0, 4] })
        foreach (var (name, op, lo, hi) in ops)
        {
            using var x = TestUtil.Random(rng, shape, lo: lo, hi: hi);
            using var dx = TestUtil.StridedOn(x, device);
            using var expected = op(x);
            using var got = op(dx);
            Same(expected, got, $"{name} {ShapeUtil.Format(shape)}");
        }
    }

    public static void Copies(Device device)
    {
        var rng = Rng("copies");
        using var x = TestUtil.Random(rng, [5, 7, 3]);
        using var dx = x.To(device);
        // Contiguous / Clone of permuted and sliced views.
        using (var p = x.Permute(2, 0, 1)) using (var dp = dx.Permute(2, 0, 1))
        using (var c = p.Contiguous()) using (var dc = dp.Contiguous())
        {
            Assert.True(dc.IsContiguous);
            Same(c, dc, "contiguous of a permutation");
        }
        using (var s = x.Slice(1, 1, 7, 3)) using (var ds = dx.Slice(1, 1, 7, 3))
        using (var c = s.Clone()) using (var dc = ds.Clone())
            Same(c, dc, "clone of a slice");
        // CopyFrom_ into a strided destination with a broadcast source; Fill_ of a strided view.
        using var row = TestUtil.Random(rng, [3]);
        using var drow = row.To(device);
        using var target = Tensor.Zeros([5, 7, 3]);
        using var dtarget = Tensor.Zeros([5, 7, 3], DType.Float32, device);
        using (var v = target.Narrow(1, 2, 4)) v.CopyFrom_(row);
        using (var v = dtarget.Narrow(1, 2, 4)) v.CopyFrom_(drow);
        using (var v = target.Slice(0, 0, 5, 2)) v.Fill_(-4.25);
        using (var v = dtarget.Slice(0, 0, 5, 2)) v.Fill_(-4.25);
        Same(target, dtarget, "CopyFrom_ and Fill_ of strided views");
        // CopyFrom_ across devices moves the source first (as PyTorch's copy_).
        using (var v = dtarget.Select(0, 1)) v.CopyFrom_(row);
        using (var v = target.Select(0, 1)) v.CopyFrom_(row);
        using (var v = target.Select(0, 2)) v.CopyFrom_(drow);
        using (var v = dtarget.Select(0, 2)) v.CopyFrom_(drow);
        Same(target, dtarget, "CopyFrom_ across devices");
    }

    public static void Reductions(Device device)
    {
        var rng = Rng("reductions");
        foreach (var shape in new long[][] { [7], [2, 3, 11], [300], [3, 9, 5], [0, 3] })
        {
            using var x = TestUtil.Random(rng, shape);
            using var dx = TestUtil.StridedOn(x, device);
            using (var e = x.Sum()) using (var g = dx.Sum()) Same(e, g, $"sum {ShapeUtil.Format(shape)}", 1e-4);
            for (int d = 0; d < shape.Length; d++)
            {
                bool keep = d % 2 == 1; // both forms are covered across dims; one launch set per dim keeps the emulator quick
                {
                    using (var e = x.Sum(d, keep)) using (var g = dx.Sum(d, keep)) Same(e, g, $"sum({d}, {keep}) {ShapeUtil.Format(shape)}", 1e-4);
                    if (shape[d] == 0) continue;
                    using (var e = x.Max(d, keep)) using (var g = dx.Max(d, keep)) Same(e, g, $"max({d}, {keep}) {ShapeUtil.Format(shape)}", 0);
                }
            }
            if (shape.Length == 3)
                using (var e = x.Sum([0, 2], keepDim: true)) using (var g = dx.Sum([0, 2], keepDim: true)) Same(e, g, "sum over dims 0 and 2", 1e-4);
        }
        // Gradients of sum (through broadcasting: SumToShape) and of max (ties share the gradient).
        using var a = TestUtil.FromDoubles([1, 3, 3, 2, 0, -1, 5, 5, 5], [3, 3]).RequiresGrad_();
        using var da = a.To(device).Detach().RequiresGrad_();
        using var w = TestUtil.Random(rng, [3]);
        using var dw = w.To(device);
        foreach (var (t, weights) in new[] { (a, w), (da, dw) })
        {
            using var m = t.Max(1);
            using var mw = m.Mul(weights);
            using var s = mw.Sum();
            s.Backward();
        }
        Same(a.Grad!, da.Grad!, "max backward (ties)");
    }

    public static void Softmax(Device device)
    {
        var rng = Rng("softmax");
        foreach (var (shape, dim, temperature) in new (long[], int, double)[] { ([4, 10], -1, 1.0), ([3, 37], 1, 0.5), ([5, 3, 6], 1, 2.0), ([7], 0, 1.0) })
            foreach (bool log in new[] { false, true })
            {
                using var x = TestUtil.Random(rng, shape, lo: -4, hi: 4).RequiresGrad_();
                using var dx = TestUtil.StridedOn(x, device).Detach().RequiresGrad_();
                using var w = TestUtil.Random(rng, shape);
                using var dw = w.To(device);
                using var y = log ? x.LogSoftmax(dim, temperature) : x.Softmax(dim, temperature);
                using var dy = log ? dx.LogSoftmax(dim, temperature) : dx.Softmax(dim, temperature);
                string what = $"{(log ? "log_softmax" : "softmax")} {ShapeUtil.Format(shape)} dim {dim} T {temperature}";
                Same(y, dy, what);
                using (var s = y.Mul(w).Sum()) s.Backward();
                using (var s = dy.Mul(dw).Sum()) s.Backward();
                Same(x.Grad!, dx.Grad!, what + " backward");
            }
        // With createGraph the backward is the differentiable formula (tensor ops on the device), not the
        // fused kernel: the gradient of Σ (∂L/∂x)² matches the CPU's (a second-order derivative).
        foreach (bool log in new[] { false, true })
        {
            using var x = TestUtil.Random(rng, [3, 6], lo: -2, hi: 2).RequiresGrad_();
            using var dx = x.To(device).Detach().RequiresGrad_();
            using var w = TestUtil.Random(rng, [3, 6]);
            using var dw = w.To(device);
            foreach (var (t, weights) in new[] { (x, w), (dx, dw) })
            {
                using var y = log ? t.LogSoftmax(-1, 0.7) : t.Softmax(-1, 0.7);
                using var l = y.Mul(weights).Sum();
                using var g = Autograd.Grad(l, t, createGraph: true);
                using var g2 = g.Mul(g).Sum();
                g2.Backward();
            }
            Same(x.Grad!, dx.Grad!, $"{(log ? "log_softmax" : "softmax")} second order", 1e-4);
        }
    }

    public static void MatMul(Device device)
    {
        var rng = Rng("matmul");
        var cases = new (long[] A, long[] B, bool TransposeB)[]
        {
            ([5, 7], [7, 3], false), ([1, 4], [4, 9], false), ([70, 3], [5, 3], true), ([2, 5, 7], [7, 3], false),
            ([3, 4, 6], [3, 6, 2], false), ([2, 1, 5, 4], [2, 4, 6], false), ([4, 0], [0, 3], false),
        };
        foreach (var (sa, sb, tb) in cases)
        {
            using var a = TestUtil.Random(rng, sa).RequiresGrad_();
            using var b = TestUtil.Random(rng, sb).RequiresGrad_();
            using var da = a.To(device).Detach().RequiresGrad_();
            using var db = b.To(device).Detach().RequiresGrad_();
            using var bt = tb ? b.T : b.Alias();
            using var dbt = tb ? db.T : db.Alias();
            using var y = a.MatMul(bt);
            using var dy = da.MatMul(dbt);
            string what = $"matmul {ShapeUtil.Format(sa)}·{ShapeUtil.Format(sb)}{(tb ? "ᵀ" : "")}";
            Same(y, dy, what, 1e-4);
            if (y.NumEl == 0) continue;
            using var w = TestUtil.Random(rng, y.ShapeArray());
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            Same(a.Grad!, da.Grad!, what + " dA", 1e-4);
            Same(b.Grad!, db.Grad!, what + " dB", 1e-4);
        }
    }

    /// <summary>A two-layer MLP: loss = Σ w·softmax(tanh(x·W1 + b1)·W2 + b2), on the CPU and on the device.</summary>
    public static void Mlp(Device device)
    {
        var rng = Rng("mlp");
        using var x = TestUtil.Random(rng, [6, 5]);
        using var weights = TestUtil.Random(rng, [6, 3]);
        Tensor[] cpu = [TestUtil.Random(rng, [5, 8]), TestUtil.Random(rng, [8]), TestUtil.Random(rng, [8, 3]), TestUtil.Random(rng, [3])];
        foreach (var p in cpu) p.RequiresGrad = true;
        var dev = cpu.Select(p => p.To(device).Detach().RequiresGrad_()).ToArray();
        try
        {
            static Tensor Loss(Tensor x, Tensor w, Tensor[] p)
            {
                using var h0 = x.MatMul(p[0]);
                using var h1 = h0.Add(p[1]);
                using var h = h1.Tanh();
                using var z0 = h.MatMul(p[2]);
                using var z = z0.Add(p[3]);
                using var s = z.Softmax(-1);
                using var r = s.Relu();
                using var sw = r.Mul(w);
                return sw.Sum();
            }
            using var dxx = x.To(device);
            using var dww = weights.To(device);
            using var loss = Loss(x, weights, cpu);
            using var dloss = Loss(dxx, dww, dev);
            Assert.Equal(device, dloss.Device);
            Assert.Equal(loss.ToDouble(), dloss.ToDouble(), 1e-5);
            loss.Backward();
            dloss.Backward();
            for (int i = 0; i < cpu.Length; i++)
            {
                Assert.Equal(device, dev[i].Grad!.Device);
                Same(cpu[i].Grad!, dev[i].Grad!, $"MLP parameter {i} gradient", 1e-5);
            }
        }
        finally
        {
            foreach (var p in cpu.Concat(dev)) p.Dispose();
        }
    }

    public static void Unsupported(Device device)
    {
        var rng = Rng("unsupported");
        using var x = TestUtil.Random(rng, [3, 4], lo: 0.5, hi: 2);
        using var dx = x.To(DType.Float64).To(device);
        // abs, erf and gelu run on float32 device tensors (MathKernels.DeviceUnary); their float64 versions have no kernel.
        foreach (var (name, op) in new (string, Func<Tensor>)[] { ("abs", () => dx.Abs()), ("erf", () => dx.Erf()), ("gelu", () => dx.Gelu()) })
        {
            var e = Assert.Throws<NotSupportedException>(op);
            Assert.Contains(name + " of a float64 tensor", e.Message);
            Assert.Contains(device.ToString(), e.Message);
            Assert.Contains("To(Device.Cpu)", e.Message);
        }
        using var d64 = Tensor.Ones([3], DType.Float64).To(device);
        var e64 = Assert.Throws<NotSupportedException>(() => d64.Sin()); // float64 add runs (Float64Kernels); float64 sin has no kernel
        Assert.Contains("float64", e64.Message);
        Assert.Contains("sin", e64.Message);
    }

    public static void MixedDevices(Device device)
    {
        var rng = Rng("mixed");
        using var x = TestUtil.Random(rng, [3, 4]);
        using var dx = x.To(device);
        foreach (var (name, op) in new (string, Func<Tensor>)[] { ("add", () => x.Add(dx)), ("mul", () => dx.Mul(x)), ("matmul", () => dx.MatMul(x.T)) })
        {
            var e = Assert.Throws<ArgumentException>(op);
            Assert.Contains(name, e.Message);
            Assert.Contains("cpu", e.Message);
            Assert.Contains(device.ToString(), e.Message);
        }
    }
}
