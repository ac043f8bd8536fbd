using Engine.Runtime;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.Optim;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.DeviceTensors;

/// <summary>
/// The differential checks of the training-step ops on an accelerator device (kernels/Conv, Pool,
/// Indexing, Norm, Random and their dispatch), written once and run on every device
/// (EmulatorOpTests, OpenCLOpTests): each op and its gradient on the device against the CPU op on
/// the same inputs (the CPU ops are themselves tested against float64 references and gradcheck in
/// tests/Engine.Tests/Ops and NN). Shapes are small and odd (the emulator runs one OS thread per GPU
/// thread) and include size-1 dims, strided (non-contiguous) device inputs, and bad inputs.
/// </summary>
internal static class DeviceOpChecks
{
    private static Random Rng(string name) => new(TestUtil.StableSeed("device-ops-" + name));


    private static void Same(Tensor expected, Tensor actual, string what, double tol)
    {
        Assert.True(ShapeUtil.SameShape(expected.Shape, actual.Shape), $"{what}: shape {ShapeUtil.Format(actual.Shape)}, expected {ShapeUtil.Format(expected.Shape)}");
        Assert.Equal(expected.DType, actual.DType);
        using var e = expected.To(DType.Float64);
        using var host = actual.To(Device.Cpu);
        using var h64 = host.To(DType.Float64);
        TestUtil.AssertClose(e.ToArray<double>(), h64, tol, tol, what);
    }

    /// <summary>
    /// Runs <paramref name="f"/> on CPU inputs and on the same values on the device (float inputs as
    /// strided views when <paramref name="strided"/>), compares the outputs, then backpropagates
    /// Σ w·y for one random w and compares every float input's gradient.
    /// </summary>
    private static void Differential(Device device, string what, Tensor[] inputs, Func<Tensor[], Tensor> f, double tol = 2e-5, bool strided = true, bool grad = true,
        int[]? contiguous = null)
    {
        var rng = Rng(what);
        var cpu = inputs.Select(t => t.DType == DType.Float32 && grad ? t.Detach().RequiresGrad_() : t.Alias()).ToArray();
        var dev = inputs.Select((t, i) =>
        {
            var d = strided && t.DType == DType.Float32 && !(contiguous ?? []).Contains(i) ? TestUtil.StridedOn(t, device) : t.To(device);
            return t.DType == DType.Float32 && grad ? d.Detach().RequiresGrad_() : d;
        }).ToArray();
        try
        {
            using var y = f(cpu);
            using var dy = f(dev);
            Assert.Equal(device, dy.Device);
            Same(y, dy, what, tol);
            if (!grad || y.DType != DType.Float32 || y.NumEl == 0) return;
            using var w = TestUtil.Random(rng, y.ShapeArray());
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            for (int i = 0; i < cpu.Length; i++)
            {
                if (!cpu[i].RequiresGrad) continue;
                Assert.True(cpu[i].Grad is not null && dev[i].Grad is not null, $"{what}: input {i} has no gradient");
                Assert.Equal(device, dev[i].Grad!.Device);
                Same(cpu[i].Grad!, dev[i].Grad!, $"{what}: gradient of input {i}", tol * 5);
            }
        }
        finally
        {
            foreach (var t in cpu.Concat(dev)) t.Dispose();
        }
    }

    public static void UnfoldFold(Device device)
    {
        var rng = Rng("unfold");
        var cases = new (long[] Shape, (int, int) K, (int, int) S, (int, int) P, (int, int) D)[]
        {
            ([2, 3, 5, 6], (3, 3), (1, 1), (1, 1), (1, 1)), ([1, 2, 7, 5], (2, 3), (2, 1), (0, 1), (1, 1)),
            ([2, 1, 6, 7], (3, 2), (2, 3), (1, 0), (2, 1)), ([1, 1, 1, 1], (1, 1), (1, 1), (0, 0), (1, 1)),
            ([0, 2, 4, 4], (2, 2), (1, 1), (0, 0), (1, 1)), ([2, 0, 4, 4], (3, 3), (1, 1), (1, 1), (1, 1)),
        };
        foreach (var (shape, k, s, p, d) in cases)
        {
            using var x = TestUtil.Random(rng, shape);
            string what = $"unfold {ShapeUtil.Format(shape)} k{k} s{s} p{p} d{d}";
            // Unfold copies: bitwise equal; Fold (its gradient) adds taps in the CPU's order: bitwise equal too.
            Differential(device, what, [x], t => t[0].Unfold(k, s, p, d), tol: 0);
            using var cols = x.Unfold(k, s, p, d);
            using var c = TestUtil.Random(rng, cols.ShapeArray());
            Differential(device, "fold of " + what, [c], t => t[0].Fold((shape[2], shape[3]), k, s, p, d), tol: 0);
        }
        using var dx = Tensor.Zeros([2, 3], DType.Float32, device);
        Assert.Contains("unfold: expects a 4-D", Assert.Throws<ArgumentException>(() => dx.Unfold((2, 2))).Message);
        using var d4 = Tensor.Zeros([1, 1, 2, 2], DType.Float32, device);
        Assert.Contains("smaller than the dilated kernel", Assert.Throws<ArgumentException>(() => d4.Unfold((3, 3))).Message);
        using var bad = Tensor.Zeros([1, 5, 4], DType.Float32, device);
        Assert.Contains("fold: input of shape [1, 5, 4]", Assert.Throws<ArgumentException>(() => bad.Fold((3, 3), (2, 2))).Message);
    }

    public static void Conv2d(Device device)
    {
        var rng = Rng("conv2d");
        foreach (var (shape, wshape, groups, pad, stride) in new (long[], long[], int, int, int)[]
        {
            ([2, 3, 7, 6], [5, 3, 3, 3], 1, 1, 1), ([1, 4, 6, 6], [6, 2, 3, 3], 2, 0, 2), ([3, 1, 5, 5], [2, 1, 1, 1], 1, 0, 1),
        })
        {
            using var x = TestUtil.Random(rng, shape);
            using var w = TestUtil.Random(rng, wshape, lo: -0.5, hi: 0.5);
            using var b = TestUtil.Random(rng, [wshape[0]]);
            Differential(device, $"conv2d {ShapeUtil.Format(shape)} * {ShapeUtil.Format(wshape)} groups {groups}", [x, w, b],
                t => t[0].Conv2d(t[1], t[2], (stride, stride), (pad, pad), null, groups), tol: 1e-5,
                contiguous: [2]); // the op views the bias as [1, C, 1, 1], which needs a contiguous bias on every device
        }
    }

    public static void MaxPool(Device device)
    {
        var rng = Rng("maxpool");
        foreach (var (shape, k, s, p, d) in new (long[], (int, int), (int, int)?, (int, int), (int, int))[]
        {
            ([2, 3, 6, 6], (2, 2), null, (0, 0), (1, 1)), ([1, 2, 7, 5], (3, 3), (2, 2), (1, 1), (1, 1)), ([1, 1, 7, 7], (2, 3), (1, 2), (1, 1), (2, 1)),
            ([0, 3, 4, 4], (2, 2), null, (0, 0), (1, 1)), ([1, 1, 1, 1], (1, 1), null, (0, 0), (1, 1)),
        })
        {
            using var x = TestUtil.Random(rng, shape);
            string what = $"max_pool2d {ShapeUtil.Format(shape)} k{k} s{s} p{p} d{d}";
            Differential(device, what, [x], t => t[0].MaxPool2d(k, s, p, d), tol: 0);
            using var dx = x.To(device);
            var (cv, ci) = x.MaxPool2dWithIndices(k, s, p, d);
            var (dv, di) = dx.MaxPool2dWithIndices(k, s, p, d);
            using (cv) using (ci) using (dv) using (di)
            {
                Assert.Equal(ci.ToArray<long>(), di.ToArray<long>());
                Assert.Equal(device, di.Device);
            }
        }
        // Ties go to the first element of the window, and a NaN wins.
        using var tie = TestUtil.FromDoubles([1, 3, 3, 2, 0, double.NaN, 5, 5, 5, 1, 2, 2, 4, 4, 0, 0], [1, 1, 4, 4]);
        using var dtie = tie.To(device);
        var (a, ai) = tie.MaxPool2dWithIndices((2, 2));
        var (b, bi) = dtie.MaxPool2dWithIndices((2, 2));
        using (a) using (ai) using (b) using (bi)
        {
            Assert.Equal(ai.ToArray<long>(), bi.ToArray<long>());
            Assert.Equal(a.ToArray<float>(), b.ToArray<float>());
        }
    }

    public static void GatherScatter(Device device)
    {
        var rng = Rng("gather");
        using var x = TestUtil.Random(rng, [4, 5, 3]);
        foreach (int dim in new[] { 0, 1, 2 })
        {
            var idxShape = new long[] { 3, 4, 2 };
            idxShape[dim] = 6; // larger than self along dim is allowed
            var values = Enumerable.Range(0, (int)TestUtil.ShapeNumEl(idxShape)).Select(_ => (long)rng.Next((int)x.Shape[dim])).ToArray();
            using var index = Tensor.FromArray(values, idxShape);
            Differential(device, $"gather dim {dim}", [x, index], t => t[0].Gather(dim, t[1]));
            // scatter_add with repeated targets (float atomics: order-free sums, so a small tolerance).
            using var src = TestUtil.Random(rng, idxShape);
            var selfShape = x.ShapeArray();
            using var self = TestUtil.Random(rng, selfShape);
            Differential(device, $"scatter_add dim {dim}", [self, index, src], t => t[0].ScatterAdd(dim, t[1], t[2]), tol: 1e-5);
        }
        // An empty index gathers nothing; a 0-d gather reads one element.
        using var empty = Tensor.Zeros([0, 5, 3], DType.Int64);
        Differential(device, "gather with an empty index", [x, empty], t => t[0].Gather(0, t[1]));
        using var scalar = TestUtil.Random(rng, []);
        using var zeroIndex = Tensor.Zeros([], DType.Int64);
        Differential(device, "gather of a 0-d tensor", [scalar, zeroIndex], t => t[0].Gather(0, t[1]), tol: 0);
        // src larger than the index: the gradient of the unused src elements is 0.
        using var small = Tensor.FromArray(new long[] { 2, 0, 1 }, 1, 3);
        using var big = TestUtil.Random(rng, [2, 4]);
        using var target = TestUtil.Random(rng, [3, 3]);
        Differential(device, "scatter_add with a larger src", [target, small, big], t => t[0].ScatterAdd(0, t[1], t[2]));
        // Errors name the op and the bad value.
        using var dx = x.To(device);
        using var badIndex = Tensor.FromArray(new long[] { 0, 7 }, 2, 1, 1).To(device);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => dx.Gather(0, badIndex));
        Assert.Contains("gather: index 7 is out of range for dim 0 of size 4", e.Message);
        using var floatIndex = Tensor.Zeros([2, 1, 1], DType.Float32, device);
        Assert.Contains("gather: index must be int64", Assert.Throws<ArgumentException>(() => dx.Gather(0, floatIndex)).Message);
        using var cpuIndex = Tensor.FromArray(new long[] { 0, 1 }, 2, 1, 1);
        Assert.Contains(device.ToString(), Assert.Throws<ArgumentException>(() => dx.Gather(0, cpuIndex)).Message);
    }

    public static void IndexSelectCatOneHot(Device device)
    {
        var rng = Rng("index-select");
        using var x = TestUtil.Random(rng, [5, 4, 3]);
        using var index = Tensor.FromArray(new long[] { 4, 0, 0, 2, 3, 4 }, 6);
        foreach (int dim in new[] { 0, 2 })
        {
            using var idx = dim == 0 ? index.Alias() : Tensor.FromArray(new long[] { 2, 2, 0 }, 3);
            Differential(device, $"index_select dim {dim}", [x, idx], t => t[0].IndexSelect(dim, t[1]));
        }
        using var a = TestUtil.Random(rng, [2, 3]);
        using var b = TestUtil.Random(rng, [4, 3]);
        using var c = TestUtil.Random(rng, [1, 3]);
        Differential(device, "cat dim 0", [a, b, c], t => Tensor.Cat(t, 0), tol: 0);
        using var a1 = TestUtil.Random(rng, [2, 5]);
        Differential(device, "cat dim 1", [a, a1], t => Tensor.Cat(t, 1), tol: 0);
        using var d = TestUtil.Random(rng, [2, 3]);
        Differential(device, "stack", [a, d], t => Tensor.Stack(t, 1), tol: 0);
        using var labels = Tensor.FromArray(new long[] { 3, 0, 9, 3, 1 }, 5);
        using var dl = labels.To(device);
        using (var e = Tensor.OneHot(labels, 10)) using (var g = Tensor.OneHot(dl, 10))
        {
            Assert.Equal(device, g.Device);
            Assert.Equal(e.ToArray<long>(), g.ToArray<long>());
        }
        using (var e = Tensor.OneHot(labels)) using (var g = Tensor.OneHot(dl)) Assert.Equal(e.ToArray<long>(), g.ToArray<long>());
        Assert.Contains("one_hot: label 9 is out of range for 5 classes", Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.OneHot(dl, 5)).Message);
        using var dx = x.To(device);
        using var other = Tensor.Zeros([1, 3], DType.Float32, Device.Cpu);
        Assert.Contains("cat", Assert.Throws<ArgumentException>(() => Tensor.Cat([dx, other], 0)).Message);
    }

    public static void WhereMaskArgMax(Device device)
    {
        var rng = Rng("where");
        using var cond = TestUtil.Random(rng, [3, 1, 5]).Gt(0.0);
        using var a = TestUtil.Random(rng, [3, 4, 5]);
        using var b = TestUtil.Random(rng, [4, 1]);
        // Values are selected (exact); the gradients of broadcast operands are sums (device order: 1e-6).
        Differential(device, "where with broadcasting", [cond, a, b], t => Tensor.Where(t[0], t[1], t[2]), tol: 2e-7);
        Differential(device, "where with a scalar", [cond, a], t => Tensor.Where(t[0], t[1], 0.0), tol: 2e-7);
        Differential(device, "masked_fill", [a, cond], t => t[0].MaskedFill(t[1], -2.5), tol: 2e-7);
        // argmax over each dim and over all: first maximum; NaN wins.
        using var x = TestUtil.FromDoubles([1, 7, 7, -2, 0, 3, 5, double.NaN, 5, 2, 2, 2], [3, 4]);
        using var dx = TestUtil.StridedOn(x, device);
        foreach (var (e, g) in new[] { (x.ArgMax(1), dx.ArgMax(1)), (x.ArgMax(0, keepDim: true), dx.ArgMax(0, keepDim: true)), (x.ArgMax(), dx.ArgMax()) })
            using (e) using (g)
            {
                Assert.Equal(e.ShapeArray(), g.ShapeArray());
                Assert.Equal(e.ToArray<long>(), g.ToArray<long>());
            }
        using var r = TestUtil.Random(rng, [7, 13]);
        using var dr = r.To(device);
        using (var e = r.ArgMax(1)) using (var g = dr.ArgMax(1)) Assert.Equal(e.ToArray<long>(), g.ToArray<long>());
    }

    public static void MasksAndConversions(Device device)
    {
        var rng = Rng("masks");
        using var a = TestUtil.FromDoubles([1, -2, 0, double.NaN, 3, 3, -0.0, 7, 2, 2, 5, -1], [3, 4]);
        using var b = TestUtil.FromDoubles([2, -2, double.NaN, 3], [4]);
        using var da = TestUtil.StridedOn(a, device);
        using var db = b.To(device);
        foreach (var (name, op) in new (string, Func<Tensor, Tensor, Tensor>)[]
        {
            ("eq", (x, y) => x.Eq(y)), ("ne", (x, y) => x.Ne(y)), ("lt", (x, y) => x.Lt(y)),
            ("le", (x, y) => x.Le(y)), ("gt", (x, y) => x.Gt(y)), ("ge", (x, y) => x.Ge(y)),
        })
        {
            using var e = op(a, b);
            using var g = op(da, db);
            Assert.Equal(DType.Bool, g.DType);
            Assert.Equal(device, g.Device);
            Assert.Equal(e.ToArray<bool>(), g.ToArray<bool>());
            using var es = op(a, b.Select(0, 1));
            using var gs = op(da, db.Select(0, 1));
            Assert.Equal(es.ToArray<bool>(), gs.ToArray<bool>());
        }
        using (var e = a.Gt(0.0)) using (var g = da.Gt(0.0)) Assert.Equal(e.ToArray<bool>(), g.ToArray<bool>());
        // Conversions: bool, int64, int32 → float32 and float32 → bool, from strided views.
        using var mask = a.Ge(2.0);
        using var dmask = da.Ge(2.0);
        using (var e = mask.To(DType.Float32)) using (var g = dmask.To(DType.Float32)) Same(e, g, "bool → float32", 0);
        using var longs = Tensor.FromArray(new long[] { 3, -5, 1L << 40, 16777217, 0, 7 }, 2, 3);
        using var dl = longs.To(device);
        using (var t = longs.T) using (var dt = dl.T) using (var e = t.To(DType.Float32)) using (var g = dt.To(DType.Float32)) Same(e, g, "int64 → float32", 0);
        using var ints = Tensor.FromArray(new int[] { 3, -5, 16777217, 9 }, 4);
        using var di = ints.To(device);
        using (var e = ints.To(DType.Float32)) using (var g = di.To(DType.Float32)) Same(e, g, "int32 → float32", 0);
        using (var e = a.To(DType.Bool)) using (var g = da.To(DType.Bool)) Assert.Equal(e.ToArray<bool>(), g.ToArray<bool>());
        // One-hot targets as floats, and a where on a device-made mask, with gradients.
        using var labels = Tensor.FromArray(new long[] { 2, 0, 3 }, 3);
        using var x = TestUtil.Random(rng, [3, 4]);
        Differential(device, "one_hot · x", [x, labels], t =>
        {
            using var oh = Tensor.OneHot(t[1], 4);
            using var f = oh.To(DType.Float32);
            return t[0].Mul(f);
        }, tol: 0);
        Differential(device, "where(x > 0.2, x, -x)", [x], t =>
        {
            using var m = t[0].Gt(0.2);
            using var n = t[0].Neg();
            return Tensor.Where(m, t[0], n);
        }, tol: 0);
        using var d64 = Tensor.Ones([2], DType.Float64).To(device);
        using (var f32 = d64.To(DType.Float32)) Assert.Equal([1f, 1f], f32.ToArray<float>()); // float64 → float32 has a kernel (Float64Kernels)
        using var l64 = Tensor.FromArray([1L, 2L], 2).To(device);
        Assert.Contains("To(float64) of a int64 tensor", Assert.Throws<NotSupportedException>(() => l64.To(DType.Float64)).Message);
    }

    public static void Statistics(Device device)
    {
        var rng = Rng("stats");
        foreach (var (shape, dims) in new (long[], int[])[] { ([4, 3, 5, 2], [0, 2, 3]), ([6, 7], [1]), ([5, 9], [0]), ([300], [0]), ([2, 1, 3], [1]), ([0, 4], [0]), ([3, 0], [0]) })
        {
            using var x0 = TestUtil.Random(rng, shape);
            using var x = x0.Add(3.0); // a mean far from 0: Welford must not cancel
            string s = $"{ShapeUtil.Format(shape)} dims [{string.Join(", ", dims)}]";
            Differential(device, "mean " + s, [x], t => t[0].Mean(dims, keepDim: true), tol: 1e-5);
            Differential(device, "var " + s, [x], t => t[0].Var(dims, keepDim: false), tol: 1e-5);
            Differential(device, "var (biased) " + s, [x], t => t[0].Var(dims, keepDim: true, correction: 0), tol: 1e-5);
            Differential(device, "std " + s, [x], t => t[0].Std(dims), tol: 1e-5);
        }
        using var p = TestUtil.Random(rng, [3, 7], lo: 0.1, hi: 4);
        Differential(device, "sqrt", [p], t => t[0].Sqrt(), tol: 0);
        Differential(device, "rsqrt", [p], t => t[0].Rsqrt(), tol: 1e-6);
        Differential(device, "mean of all", [p], t => t[0].Mean(), tol: 1e-5);
    }

    public static void LayerNormAndAvgPool(Device device)
    {
        var rng = Rng("layernorm");
        using var x0 = TestUtil.Random(rng, [3, 4, 7]);
        using var x = x0.Add(2.0);
        using var cpu = new LayerNorm([4, 7]);
        using var dev = new LayerNorm([4, 7]);
        using (Tensor.NoGrad())
        using (var w = TestUtil.Random(rng, [4, 7], lo: 0.5, hi: 1.5))
        {
            cpu.Weight!.CopyFrom_(w);
            dev.Weight!.CopyFrom_(w);
        }
        dev.To(device);
        var inputs = new[] { x.Detach().RequiresGrad_(), TestUtil.StridedOn(x, device).Detach().RequiresGrad_() };
        try
        {
            using var y = cpu.Forward(inputs[0]);
            using var dy = dev.Forward(inputs[1]);
            Same(y, dy, "layer_norm", 1e-5);
            using var w = TestUtil.Random(rng, y.ShapeArray());
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            Same(inputs[0].Grad!, inputs[1].Grad!, "layer_norm input gradient", 1e-4);
            Same(cpu.Weight!.Grad!, dev.Weight!.Grad!, "layer_norm weight gradient", 1e-4);
            Same(cpu.Bias!.Grad!, dev.Bias!.Grad!, "layer_norm bias gradient", 1e-4);
        }
        finally
        {
            foreach (var t in inputs) t.Dispose();
        }
        using var img = TestUtil.Random(rng, [2, 3, 7, 6]);
        Differential(device, "avg_pool2d", [img], t => t[0].AvgPool2d((2, 2)), tol: 1e-6);
        Differential(device, "avg_pool2d (padding, count_include_pad false)", [img], t => t[0].AvgPool2d((3, 3), (2, 2), (1, 1), countIncludePad: false), tol: 1e-6);
        Differential(device, "adaptive_avg_pool2d", [img], t => t[0].AdaptiveAvgPool2d(3, 4), tol: 1e-6);
    }

    public static void BatchNorm(Device device)
    {
        var rng = Rng("batchnorm");
        using var x0 = TestUtil.Random(rng, [3, 4, 5, 3]);
        using var x = x0.Mul(2.0).Add(1.5);
        using var cpu = new BatchNorm2d(4);
        using var dev = new BatchNorm2d(4);
        using (Tensor.NoGrad())
        {
            cpu.Weight!.CopyFrom_(TestUtil.Random(rng, [4], lo: 0.5, hi: 1.5));
            cpu.Bias!.CopyFrom_(TestUtil.Random(rng, [4]));
            dev.Weight!.CopyFrom_(cpu.Weight);
            dev.Bias!.CopyFrom_(cpu.Bias);
        }
        dev.To(device);
        Assert.Equal(device, dev.Weight!.Device);
        Assert.Equal(device, dev.NumBatchesTracked!.Device);
        for (int step = 0; step < 2; step++) // train mode: batch statistics, running-stat updates, gradients through them
        {
            var inputs = new[] { x.Detach().RequiresGrad_(), TestUtil.StridedOn(x, device).Detach().RequiresGrad_() };
            using var y = cpu.Forward(inputs[0]);
            using var dy = dev.Forward(inputs[1]);
            Same(y, dy, $"batch_norm2d train step {step}", 1e-5);
            using var w = TestUtil.Random(rng, y.ShapeArray());
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            Same(inputs[0].Grad!, inputs[1].Grad!, "batch_norm2d input gradient", 1e-4);
            Same(cpu.Weight!.Grad!, dev.Weight!.Grad!, "batch_norm2d weight gradient", 1e-4);
            Same(cpu.Bias!.Grad!, dev.Bias!.Grad!, "batch_norm2d bias gradient", 1e-4);
            cpu.ZeroGrad();
            dev.ZeroGrad();
            foreach (var t in inputs) t.Dispose();
        }
        Same(cpu.RunningMean!, dev.RunningMean!, "running mean", 1e-6);
        Same(cpu.RunningVar!, dev.RunningVar!, "running var", 1e-5);
        Assert.Equal(2L, dev.NumBatchesTracked!.ToArray<long>()[0]);
        // Second order (create_graph): the fused op's backward switches to its differentiable form.
        {
            using var xc = x.Detach().RequiresGrad_();
            using var xd = x.To(device).Detach().RequiresGrad_();
            using var w2 = TestUtil.Random(rng, x.ShapeArray());
            using var dw2 = w2.To(device);
            foreach (var (m, t, weights) in new[] { (cpu, xc, w2), (dev, xd, dw2) })
            {
                using var y = m.Forward(t);
                using var l = y.Mul(y).Mul(weights).Sum();
                using var g = Autograd.Grad(l, t, createGraph: true);
                using var g2 = g.Mul(g).Sum();
                g2.Backward();
            }
            Same(xc.Grad!, xd.Grad!, "batch_norm2d second order", 1e-3);
            cpu.ZeroGrad();
            dev.ZeroGrad();
        }
        // Without affine parameters and without running statistics.
        using (var plainCpu = new BatchNorm2d(4, affine: false, trackRunningStats: false))
        using (var plainDev = new BatchNorm2d(4, affine: false, trackRunningStats: false))
        {
            plainDev.To(device);
            Differential(device, "batch_norm2d without affine", [x], t => (t[0].Device.Type == Engine.Runtime.DeviceType.Cpu ? plainCpu : plainDev).Forward(t[0]), tol: 1e-5);
        }
        cpu.Eval();
        dev.Eval();
        using var dx = x.To(device);
        using (var y = cpu.Forward(x)) using (var dy = dev.Forward(dx)) Same(y, dy, "batch_norm2d eval", 1e-5);
    }

    public static void Dropout(Device device)
    {
        // The device mask is the CPU mask, bit for bit, and the generator ends in the same state.
        foreach (var (shape, p) in new (long[], double)[] { ([7, 13], 0.3), ([3, 1, 5], 0.5), ([1], 0.9), ([1001], 0.25) })
        {
            var gc = new Generator(42);
            var gd = new Generator(42);
            using var _ = Tensor.Bernoulli([3], 0.5, DType.Float32, gc); // an odd offset first
            using var __ = Tensor.Bernoulli([3], 0.5, DType.Float32, gd);
            using var cpu = new Engine.Tensors.NN.Dropout(p, gc);
            using var dev = new Engine.Tensors.NN.Dropout(p, gd);
            using var x = TestUtil.Random(Rng("dropout"), shape).RequiresGrad_();
            using var dx = x.To(device).Detach().RequiresGrad_();
            using var y = cpu.Forward(x);
            using var dy = dev.Forward(dx);
            Same(y, dy, $"dropout p={p} {ShapeUtil.Format(shape)}", 0);
            Assert.Equal(gc.GetState(), gd.GetState());
            using (var s = y.Sum()) s.Backward();
            using (var s = dy.Sum()) s.Backward();
            Same(x.Grad!, dx.Grad!, "dropout gradient", 0);
        }
        foreach (double p in new[] { 0.0, 1.0 })
        {
            var g = new Generator(1);
            using var d = Tensor.Bernoulli([5, 3], p, DType.Float32, g).To(device);
            using var e = Tensor.Ones([5, 3]).Mul(p);
            Same(e, d, $"Bernoulli p = {p}", 0);
        }
    }

    public static void Losses(Device device)
    {
        var rng = Rng("losses");
        using var logits = TestUtil.Random(rng, [6, 10], lo: -3, hi: 3);
        using var teacher = TestUtil.Random(rng, [6, 10], lo: -3, hi: 3);
        using var labels = Tensor.FromArray(new long[] { 3, 0, 9, 3, 1, 7 }, 6);
        Differential(device, "cross_entropy", [logits, labels], t => Functional.CrossEntropy(t[0], t[1]), tol: 1e-5);
        Differential(device, "cross_entropy (label smoothing, sum)", [logits, labels], t => Functional.CrossEntropy(t[0], t[1], 0.1, reduction: Reduction.Sum), tol: 1e-5);
        using var ignored = Tensor.FromArray(new long[] { 3, -100, 9, -100, 1, 7 }, 6);
        Differential(device, "cross_entropy (ignore index)", [logits, ignored], t => Functional.CrossEntropy(t[0], t[1], reduction: Reduction.None), tol: 1e-5);
        Differential(device, "kd_loss", [logits, teacher, labels],
            t => Engine.Distillation.Losses.KnowledgeDistillation(t[0], t[1], t[2], 4.0, 0.9), tol: 1e-5);
    }

    /// <summary>SGD with momentum (and weight decay, dampening, Nesterov) on the device equals the CPU's update bit for bit.</summary>
    public static void Sgd(Device device)
    {
        var rng = Rng("sgd");
        foreach (var (momentum, dampening, wd, nesterov) in new (double, double, double, bool)[] { (0.9, 0, 5e-4, false), (0.9, 0, 0, true), (0, 0, 1e-2, false), (0.8, 0.3, 0, false) })
        {
            using var p = TestUtil.Random(rng, [5, 7]);
            using var pc = p.Clone().RequiresGrad_();
            using var pd = p.To(device).Detach().RequiresGrad_();
            using var oc = new SGD([pc], 0.1, momentum, dampening, wd, nesterov);
            using var od = new SGD([pd], 0.1, momentum, dampening, wd, nesterov);
            for (int step = 0; step < 3; step++)
            {
                using var g = TestUtil.Random(rng, [5, 7]);
                using (Tensor.NoGrad())
                {
                    pc.Grad = g.Clone();
                    pd.Grad = g.To(device);
                }
                oc.Step();
                od.Step();
                Assert.Equal(device, pd.Device);
                // The step is one kernel (kernels/Optim): the emulator runs it as C# and equals the CPU loop bit for
                // bit; OpenCL and CUDA compilers may contract a·b + c into an FMA, one rounding fewer: a few ulps.
                Same(pc, pd, $"sgd momentum {momentum} dampening {dampening} wd {wd} nesterov {nesterov} step {step}", device.Type == DeviceType.Emulator ? 0 : 1e-6);
            }
        }
    }

    /// <summary>A few SGD steps of the Fashion-MNIST student (batch of random images) on the device follow the CPU's losses.</summary>
    public static void StudentSteps(Device device, int batch, int steps)
    {
        var rng = Rng("student");
        using var cpuModel = Engine.Tensors.NN.Models.FashionMnistModels.Student(new Generator(7));
        using var devModel = Engine.Tensors.NN.Models.FashionMnistModels.Student(new Generator(7));
        devModel.To(device);
        using var oc = new SGD(cpuModel.Parameters(), 0.05, momentum: 0.9, weightDecay: 5e-4);
        using var od = new SGD(devModel.Parameters(), 0.05, momentum: 0.9, weightDecay: 5e-4);
        for (int step = 0; step < steps; step++)
        {
            using var images = TestUtil.Random(rng, [batch, 1, 28, 28]);
            using var labels = Tensor.FromArray(Enumerable.Range(0, batch).Select(_ => (long)rng.Next(10)).ToArray(), batch);
            using var di = images.To(device);
            using var dl = labels.To(device);
            double lc, ld;
            using (var logits = cpuModel.Forward(images))
            using (var loss = Functional.CrossEntropy(logits, labels))
            {
                oc.ZeroGrad();
                loss.Backward();
                oc.Step();
                lc = loss.ToDouble();
            }
            using (var logits = devModel.Forward(di))
            using (var loss = Functional.CrossEntropy(logits, dl))
            {
                Assert.Equal(device, loss.Device);
                od.ZeroGrad();
                loss.Backward();
                od.Step();
                ld = loss.ToDouble();
            }
            Assert.True(Math.Abs(lc - ld) <= 1e-4 * Math.Max(1, Math.Abs(lc)), $"student step {step}: loss {ld} on {device}, {lc} on the CPU");
        }
        var cpuParams = cpuModel.Parameters().ToArray();
        var devParams = devModel.Parameters().ToArray();
        for (int i = 0; i < cpuParams.Length; i++)
            Same(cpuParams[i], devParams[i], $"student parameter {i} after {steps} steps", 1e-4);
    }
}
