using Engine.Tensors;
using Device = Engine.Runtime.Device;

namespace Engine.Tests.DeviceTensors;

/// <summary>
/// The ops of kernels/Reduce/RowReduceKernels.cs, kernels/Elementwise/MathKernels.cs (abs, erf, gelu, pow, logical; + maximum/minimum/sin/
/// cos/silu/sign instances of ElementwiseKernels), the MinReduce reductions and kernels/Indexing/SelectKernels.cs
/// on a device, against the CPU op on the same inputs and against a float64 reference (the CPU op run on
/// float64 copies, or plain loops for argmin and masked_select), values and gradients. Shapes are small and
/// odd, with size-1 and empty dims, strided (non-contiguous) device inputs, broadcasting, NaN/±∞ rows and bad
/// inputs. Written once, run on the emulator and on OpenCL (PoCL).
/// </summary>
internal static class DeviceMathOpChecks
{
    private static Random Rng(string name) => new(TestUtil.StableSeed("device-math-" + name));


    private static double[] Doubles(Tensor t)
    {
        var host = t.To(Device.Cpu);
        var d = host.To(DType.Float64);
        var values = d.ToArray<double>();
        if (!ReferenceEquals(d, host)) d.Dispose();
        if (!ReferenceEquals(host, t)) host.Dispose();
        return values;
    }

    private static void Same(Tensor expected, Tensor actual, string what, double tol)
    {
        Assert.True(ShapeUtil.SameShape(expected.Shape, actual.Shape), $"{what}: shape {ShapeUtil.Format(actual.Shape)}, expected {ShapeUtil.Format(expected.Shape)}");
        Assert.Equal(expected.DType == DType.Float64 ? DType.Float32 : expected.DType, actual.DType);
        var e = Doubles(expected);
        var a = Doubles(actual);
        for (int i = 0; i < e.Length; i++)
        {
            if (double.IsNaN(e[i]) || double.IsInfinity(e[i])) { Assert.True(e[i].Equals(a[i]), $"{what}[{i}]: {a[i]}, expected {e[i]}"); continue; }
            Assert.True(Math.Abs(e[i] - a[i]) <= tol * (1 + Math.Abs(e[i])), $"{what}[{i}]: {a[i]:R}, expected {e[i]:R}");
        }
    }

    /// <summary>
    /// f on CPU float32 inputs, on float64 copies (the reference) and on device copies (strided views when
    /// <paramref name="strided"/>): outputs compared; then Σ w·y is backpropagated for one random w and every
    /// float input's gradient compared the same way (when <paramref name="grad"/>).
    /// </summary>
    private static void Differential(Device device, string what, Tensor[] inputs, Func<Tensor[], Tensor> f, double tol = 2e-5, bool strided = true, bool grad = true)
    {
        var rng = Rng(what);
        bool Float(Tensor t) => t.DType == DType.Float32;
        var cpu = inputs.Select(t => Float(t) && grad ? t.Detach().RequiresGrad_() : t.Alias()).ToArray();
        var f64 = inputs.Select(t => Float(t) ? t.To(DType.Float64).Detach().RequiresGrad_(grad) : t.Alias()).ToArray();
        var dev = inputs.Select(t =>
        {
            var d = strided && Float(t) ? TestUtil.StridedOn(t, device) : t.To(device);
            return Float(t) && grad ? d.Detach().RequiresGrad_() : d;
        }).ToArray();
        try
        {
            using var y = f(cpu);
            using var y64 = f(f64);
            using var dy = f(dev);
            Assert.Equal(device, dy.Device);
            Same(y, dy, what + " (vs CPU)", tol);
            Same(y64, dy, what + " (vs float64)", Math.Max(tol * 10, 1e-6)); // float32 rounding of the result
            if (!grad || y.DType != DType.Float32 || y.NumEl == 0) return;
            using var w = TestUtil.Random(rng, y.ShapeArray());
            using var w64 = w.To(DType.Float64);
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = y64.Mul(w64).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            for (int i = 0; i < cpu.Length; i++)
            {
                if (!cpu[i].RequiresGrad) continue;
                Assert.True(cpu[i].Grad is not null && dev[i].Grad is not null, $"{what}: input {i} has no gradient");
                Assert.Equal(device, dev[i].Grad!.Device);
                Same(cpu[i].Grad!, dev[i].Grad!, $"{what}: gradient of input {i} (vs CPU)", tol * 5);
                Same(f64[i].Grad!, dev[i].Grad!, $"{what}: gradient of input {i} (vs float64)", Math.Max(tol * 50, 1e-6));
            }
        }
        finally
        {
            foreach (var t in cpu.Concat(f64).Concat(dev)) t.Dispose();
        }
    }

    /// <summary>Random values rounded to multiples of 0.25 in [-2, 2]: many ties for min/max/argmin.</summary>
    private static Tensor Coarse(Random rng, long[] shape)
        => TestUtil.FromDoubles(TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), -2, 2).Select(v => Math.Round(v * 4) / 4).ToArray(), shape);

    public static void MinArgMin(Device device)
    {
        var rng = Rng("min");
        foreach (var shape in new long[][] { [7], [3, 5], [1, 9], [4, 1], [2, 3, 5], [5, 33], [2, 0, 3] })
        {
            using var x = Coarse(rng, shape);
            string s = ShapeUtil.Format(shape);
            for (int d = 0; d < shape.Length; d++)
            {
                if (shape[d] == 0 && x.NumEl == 0 && shape.Length > 1) continue; // min over an empty dim into a non-empty result is an error (below)
                int dim = d;
                Differential(device, $"min {s} dim {dim}", [x], t => t[0].Min(dim), tol: 0);
                Differential(device, $"min {s} dim {dim} keepdim", [x], t => t[0].Min(dim, keepDim: true), tol: 0);
                Differential(device, $"min values {s} dim {dim}", [x], t => t[0].MinWithIndices(dim).Values, tol: 0);
                Differential(device, $"max values {s} dim {dim}", [x], t => t[0].MaxWithIndices(dim).Values, tol: 0);
                if (x.NumEl == 0) continue;
                using var dx = TestUtil.StridedOn(x, device);
                using var idx = dx.ArgMin(dim);
                Assert.Equal(ArgMinReference(x, dim), idx.ToArray<long>());
                var (_, withIdx) = dx.MinWithIndices(dim, keepDim: true);
                using (withIdx) Assert.Equal(ArgMinReference(x, dim), withIdx.ToArray<long>());
            }
            if (shape.Length > 1 && x.NumEl > 0)
            {
                Differential(device, $"min {s} dims [0, -1]", [x], t => t[0].Min([0, -1]), tol: 0);
                Differential(device, $"min {s} all", [x], t => t[0].Min(), tol: 0);
                using var dx = x.To(device);
                using var all = dx.ArgMin();
                using var cpuAll = x.ArgMin();
                Assert.Equal(cpuAll.ToArray<long>(), all.ToArray<long>());
            }
        }
        // NaN counts as the smallest (first NaN), ±∞ are ordinary values.
        using var special = Tensor.FromArray([3f, float.NaN, -1f, float.NaN, float.NegativeInfinity, 2f, float.PositiveInfinity, 0f], 2, 4);
        using var dspecial = special.To(device);
        using (var i = dspecial.ArgMin(1)) Assert.Equal([1L, 0L], i.ToArray<long>());
        using (var m = dspecial.Min(1)) Assert.Equal([float.NaN, float.NegativeInfinity], m.ToArray<float>());
        using var empty = Tensor.Zeros([2, 0], DType.Float32, device);
        Assert.Contains("min: cannot reduce over an empty dim", Assert.Throws<ArgumentException>(() => empty.Min(1)).Message);
        Assert.Contains("argmin: cannot reduce over an empty dim", Assert.Throws<ArgumentException>(() => empty.ArgMin(1)).Message);
    }

    /// <summary>Plain-loop argmin along <paramref name="dim"/> (first minimum; NaN wins).</summary>
    private static long[] ArgMinReference(Tensor x, int dim)
    {
        var shape = x.ShapeArray();
        var v = x.ToArray<float>();
        long n = shape[dim], inner = 1, outer = 1;
        for (int k = dim + 1; k < shape.Length; k++) inner *= shape[k];
        for (int k = 0; k < dim; k++) outer *= shape[k];
        var result = new long[outer * inner];
        for (long o = 0; o < outer; o++)
            for (long i = 0; i < inner; i++)
            {
                long best = 0;
                float bestValue = v[o * n * inner + i];
                for (long j = 1; j < n && !float.IsNaN(bestValue); j++)
                {
                    float c = v[(o * n + j) * inner + i];
                    if (float.IsNaN(c) || c < bestValue) { best = j; bestValue = c; }
                }
                result[o * inner + i] = best;
            }
        return result;
    }

    public static void LogSumExp(Device device)
    {
        var rng = Rng("logsumexp");
        foreach (var shape in new long[][] { [7], [3, 5], [1, 9], [4, 1], [2, 3, 5], [3, 300], [2, 0] })
        {
            using var x = TestUtil.Random(rng, shape, lo: -30, hi: 30);
            string s = ShapeUtil.Format(shape);
            for (int d = 0; d < shape.Length; d++)
            {
                int dim = d;
                Differential(device, $"logsumexp {s} dim {dim}", [x], t => t[0].LogSumExp(dim), tol: 2e-6);
                Differential(device, $"logsumexp {s} dim {dim} keepdim", [x], t => t[0].LogSumExp(dim, keepDim: true), tol: 2e-6);
            }
            if (shape.Length > 1) Differential(device, $"logsumexp {s} dims [0, -1]", [x], t => t[0].LogSumExp([0, -1]), tol: 2e-6);
            Differential(device, $"logsumexp {s} all", [x], t => t[0].LogSumExp(), tol: 2e-6);
        }
        // Rows: all −∞ → −∞; a +∞ → +∞; a NaN → NaN; huge values do not overflow; an empty row → −∞.
        float ninf = float.NegativeInfinity, pinf = float.PositiveInfinity;
        using var special = Tensor.FromArray([ninf, ninf, ninf, 1f, pinf, 2f, 3f, float.NaN, 0f, 1e30f, 1e30f, -1e30f], 4, 3);
        using var dspecial = special.To(device);
        using var cpuLse = special.LogSumExp(1);
        using var devLse = dspecial.LogSumExp(1);
        var got = devLse.ToArray<float>();
        Assert.Equal([ninf, pinf, float.NaN], got[..3]);
        Assert.Equal(1e30f, got[3]);
        Assert.Equal(cpuLse.ToArray<float>(), got);
        using var emptyRows = Tensor.Zeros([3, 0], DType.Float32, device);
        using (var e = emptyRows.LogSumExp(1)) Assert.Equal([ninf, ninf, ninf], e.ToArray<float>());
    }

    public static void ClampPowMaximum(Device device)
    {
        var rng = Rng("clamp");
        foreach (var shape in new long[][] { [7], [3, 5], [1, 9], [2, 3, 5], [0, 4] })
        {
            using var x = Coarse(rng, shape); // ties with the bounds: the gradient's in/out boundary
            string s = ShapeUtil.Format(shape);
            Differential(device, $"clamp {s} [-0.5, 1]", [x], t => t[0].Clamp(-0.5, 1.0), tol: 0);
            Differential(device, $"clamp {s} min 0.25", [x], t => t[0].Clamp(min: 0.25), tol: 0);
            Differential(device, $"clamp {s} max -0.25", [x], t => t[0].Clamp(max: -0.25), tol: 0);
            Differential(device, $"clamp {s} min > max", [x], t => t[0].Clamp(1.0, -1.0), tol: 0);
            var last = shape[^1];
            using var lo = Coarse(rng, [last]);
            using var hi0 = Coarse(rng, [last]);
            using var hi = hi0.Add(1.0);
            // The broadcast bound's gradient sums over the leading dims: the device's reduction order differs from the CPU's.
            Differential(device, $"clamp {s} tensor bounds (broadcast)", [x, lo, hi], t => t[0].Clamp(t[1], t[2]), tol: 1e-6);
            Differential(device, $"maximum {s} (ties)", [x, lo], t => t[0].Maximum(t[1]), tol: 1e-6);
            Differential(device, $"minimum {s} (ties)", [x, lo], t => t[0].Minimum(t[1]), tol: 1e-6);

            using var positive = TestUtil.Random(rng, shape, lo: 0.1, hi: 3);
            foreach (var e in new[] { 2.0, 0.5, -1.0, 3.0, 0.0, -2.5 })
                Differential(device, $"pow {s} ^ {e}", [positive], t => t[0].Pow(e), tol: 2e-6);
            Differential(device, $"pow {s} (negative base) ^ 3", [x], t => t[0].Pow(3.0), tol: 2e-6);
            using var exponent = TestUtil.Random(rng, [last], lo: -2, hi: 2);
            Differential(device, $"pow {s} ^ tensor (broadcast)", [positive, exponent], t => t[0].Pow(t[1]), tol: 2e-6);
            Differential(device, $"sin cos silu sign {s}", [x], t =>
            {
                using var a = t[0].Sin();
                using var b = t[0].Cos();
                using var c = t[0].Silu();
                using var d = t[0].Sign();
                using var ab = a.Add(b);
                using var abc = ab.Mul(c);
                return abc.Add(d);
            }, tol: 2e-6);
        }
        // pow's limits: 0^b for b ≥ 0 gives a zero exponent gradient; a^0 a zero base gradient; IEEE specials.
        using var zeros = Tensor.FromArray([0f, 0f, 2f, -8f, 0f], 5);
        using var exps = Tensor.FromArray([0f, 2f, 0f, 1f / 3f, -1f], 5);
        Differential(device, "pow limits", [zeros, exps], t => t[0].Pow(t[1]), tol: 2e-6, strided: false, grad: false);
        using var dz = zeros.To(device);
        using var de = exps.To(device);
        using var p = dz.Pow(de);
        Assert.Equal([1f, 0f, 1f, float.NaN, float.PositiveInfinity], p.ToArray<float>());
        Assert.Contains("clamp: at least one of min and max", Assert.Throws<ArgumentException>(() => dz.Clamp((double?)null, null)).Message);
    }

    /// <summary>
    /// abs, erf, gelu (exact and tanh forms) of MathKernels.DeviceUnary: values and gradients (abs' g·sign(x),
    /// erf's and gelu's exp/erf/tanh formulas, run on the device) on strided device views against the CPU op
    /// and float64; then ±0, ±∞, NaN and huge inputs without gradients.
    /// </summary>
    public static void AbsErfGelu(Device device)
    {
        var rng = Rng("abs-erf-gelu");
        foreach (var shape in new long[][] { [7], [3, 5], [1, 9], [4, 1], [2, 3, 5], [5, 333], [0, 4], [] })
        {
            string s = ShapeUtil.Format(shape);
            using var coarse = Coarse(rng, shape); // exact zeros: abs' subgradient 0 there
            Differential(device, $"abs {s}", [coarse], t => t[0].Abs(), tol: 0);
            using var x = TestUtil.Random(rng, shape, lo: -6, hi: 6); // both tails of erf and gelu
            Differential(device, $"abs {s} (random)", [x], t => t[0].Abs(), tol: 0);
            Differential(device, $"erf {s}", [x], t => t[0].Erf(), tol: 2e-6);
            Differential(device, $"gelu {s}", [x], t => t[0].Gelu(), tol: 2e-6);
            Differential(device, $"gelu tanh {s}", [x], t => t[0].Gelu("tanh"), tol: 2e-6);
            using var small = TestUtil.Random(rng, shape, lo: -0.01, hi: 0.01); // erf's series region, gelu near 0
            Differential(device, $"erf {s} near 0", [small], t => t[0].Erf(), tol: 2e-6);
            Differential(device, $"gelu {s} near 0", [small], t => t[0].Gelu(), tol: 2e-6);
            Differential(device, $"gelu tanh {s} near 0", [small], t => t[0].Gelu("tanh"), tol: 2e-6);
        }
        // Specials: NaN stays NaN; erf(±∞) = ±1; gelu(+∞) = +∞ and gelu(−∞) = −∞·0 = NaN in both forms (as on the
        // CPU); huge |x| saturate (x² overflows float in the tanh form).
        float nan = float.NaN, pinf = float.PositiveInfinity, ninf = float.NegativeInfinity;
        using var special = Tensor.FromArray([nan, pinf, ninf, 0f, -0f, 1e30f, -1e30f, 30f, -30f, 9f, -9f, 1e-30f, -1e-30f, 3.5f], 14);
        Differential(device, "abs specials", [special], t => t[0].Abs(), tol: 0, strided: false, grad: false);
        Differential(device, "erf specials", [special], t => t[0].Erf(), tol: 2e-6, strided: false, grad: false);
        Differential(device, "gelu specials", [special], t => t[0].Gelu(), tol: 2e-6, strided: false, grad: false);
        Differential(device, "gelu tanh specials", [special], t => t[0].Gelu("tanh"), tol: 2e-6, strided: false, grad: false);
        using var ds = special.To(device);
        using (var a = ds.Abs())
        {
            var v = a.ToArray<float>();
            Assert.True(float.IsNaN(v[0]));
            Assert.Equal([pinf, pinf], v[1..3]);
            Assert.Equal(0, BitConverter.SingleToInt32Bits(v[4])); // |−0| = +0
        }
        using (var e = ds.Erf())
        {
            var v = e.ToArray<float>();
            Assert.True(float.IsNaN(v[0]));
            Assert.Equal([1f, -1f], v[1..3]);
        }
        foreach (var form in new[] { "none", "tanh" })
        {
            using var g = ds.Gelu(form);
            var v = g.ToArray<float>();
            Assert.True(float.IsNaN(v[0]), $"gelu {form}(NaN)");
            Assert.Equal(pinf, v[1]);
            Assert.True(float.IsNaN(v[2]), $"gelu {form}(-inf) = -inf * 0");
            Assert.Equal(1e30f, v[5]);
            Assert.Equal(0f, v[6]);
        }
        // The tanh form's left tail keeps relative accuracy (x·σ(2u), no 1 + tanh u cancellation):
        // float64 reference ½·x·(1 + tanh u) = x/(1 + e^(−2u)).
        using var tail = Tensor.FromArray([-5f, -6f, -7f, -8f], 4);
        using var dtail = tail.To(device);
        using var gt = dtail.Gelu("tanh");
        var got = gt.ToArray<float>();
        for (int i = 0; i < got.Length; i++)
        {
            double v = -5 - i, u = 0.79788456080286535588 * (v + 0.044715 * v * v * v);
            double expected = v / (1 + Math.Exp(-2 * u));
            Assert.True(Math.Abs(got[i] - expected) <= 1e-4 * Math.Abs(expected), $"gelu tanh({v}) = {got[i]:R}, expected {expected:R}");
        }
        using var bad = Tensor.Ones([3], DType.Float32, device);
        Assert.Contains("approximate", Assert.Throws<ArgumentException>(() => bad.Gelu("erf")).Message);
    }

    public static void Logical(Device device)
    {
        var rng = Rng("logical");
        using var a = Coarse(rng, [3, 5]);
        using var b = Coarse(rng, [5]);
        using var ca = a.Gt(0.0);
        using var cb = b.Le(0.25);
        using var da = ca.To(device);
        using var db = cb.To(device);
        foreach (var (name, f) in new (string, Func<Tensor, Tensor, Tensor>)[]
                 { ("and", (x, y) => x.LogicalAnd(y)), ("or", (x, y) => x.LogicalOr(y)), ("xor", (x, y) => x.LogicalXor(y)), ("not", (x, _) => x.LogicalNot()) })
        {
            using var expected = f(ca, cb);
            using var got = f(da, db);
            Assert.Equal(device, got.Device);
            Assert.Equal(DType.Bool, got.DType);
            Assert.Equal(expected.ToArray<bool>(), got.ToArray<bool>());
        }
        using var strided = TestUtil.StridedOn(a, device); // non-bool operands count as true where non-zero (float → bool on the device)
        using var expectedF = a.LogicalAnd(cb);
        using var gotF = strided.LogicalAnd(db);
        Assert.Equal(expectedF.ToArray<bool>(), gotF.ToArray<bool>());
    }

    public static void IndexAdd(Device device)
    {
        var rng = Rng("index_add");
        foreach (var (shape, dim, index) in new (long[], int, long[])[]
        {
            ([5, 3], 0, [4, 0, 4, 2, 4]), ([2, 7, 3], 1, [6, 6, 0]), ([3, 4], -1, [3]), ([4], 0, [1, 1, 1, 2]), ([3, 2], 0, []), ([1, 1], 1, [0, 0]),
        })
        {
            using var x = TestUtil.Random(rng, shape);
            var srcShape = (long[])shape.Clone();
            int d = dim < 0 ? dim + shape.Length : dim;
            srcShape[d] = index.Length;
            using var src = TestUtil.Random(rng, srcShape);
            using var idx = Tensor.FromArray(index, index.Length);
            // Repeated indices add with float atomics in no fixed order: a few ulps.
            Differential(device, $"index_add {ShapeUtil.Format(shape)} dim {dim} index [{string.Join(", ", index)}]", [x, idx, src],
                t => t[0].IndexAdd(dim, t[1], t[2]), tol: 1e-6);
        }
        using var dx = Tensor.Zeros([3, 2], DType.Float32, device);
        using var bad = Tensor.FromArray([0L, 3L], 2).To(device);
        using var srcOk = Tensor.Zeros([2, 2], DType.Float32, device);
        Assert.Contains("index_add: index 3 is out of range for dim 0 of size 3", Assert.Throws<ArgumentOutOfRangeException>(() => dx.IndexAdd(0, bad, srcOk)).Message);
        using var good = Tensor.FromArray([0L, 1L], 2).To(device);
        using var srcBad = Tensor.Zeros([3, 2], DType.Float32, device);
        Assert.Contains("index_add: source must be float32 of shape [2, 2]", Assert.Throws<ArgumentException>(() => dx.IndexAdd(0, good, srcBad)).Message);
    }

    public static void MaskedSelect(Device device)
    {
        var rng = Rng("masked_select");
        foreach (var (shape, maskShape, p) in new (long[], long[], double)[]
        {
            ([3, 5], [3, 5], 0.5), ([3, 5], [5], 0.5), ([4, 1], [4, 6], 0.3), ([3, 700], [3, 700], 0.5), ([2, 1100], [1100], 0.9),
            ([7], [7], 0.0), ([7], [7], 1.0), ([0, 3], [3], 0.5), ([1], [1], 1.0), ([2, 3], [], 1.0),
        })
        {
            using var x = TestUtil.Random(rng, shape);
            var bits = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(maskShape), 0, 1).Select(v => v < p).ToArray();
            using var mask = Tensor.FromArray(bits, maskShape);
            string what = $"masked_select {ShapeUtil.Format(shape)} mask {ShapeUtil.Format(maskShape)} p {p}";
            Differential(device, what, [x, mask], t => t[0].MaskedSelect(t[1]), tol: 0);
            // Plain-loop reference: the broadcast elements where the mask is true, row-major.
            var outShape = TestUtil.BroadcastShape(shape, maskShape);
            var xv = x.ToArray<float>().Select(v => (double)v).ToArray();
            var mv = bits.Select(b => b ? 1.0 : 0.0).ToArray();
            var expected = new List<float>();
            for (long i = 0; i < TestUtil.ShapeNumEl(outShape); i++)
            {
                var at = TestUtil.Unravel(i, outShape);
                if (TestUtil.BroadcastRead(mv, maskShape, at) != 0) expected.Add((float)TestUtil.BroadcastRead(xv, shape, at));
            }
            using var dx = TestUtil.StridedOn(x, device);
            using var dm = mask.To(device);
            using var y = dx.MaskedSelect(dm);
            Assert.Equal(expected, y.ToArray<float>());
        }
        using var d = Tensor.Zeros([3], DType.Float32, device);
        using var floatMask = Tensor.Zeros([3], DType.Float32, device);
        Assert.Contains("masked_select: mask must be bool, got float32", Assert.Throws<ArgumentException>(() => d.MaskedSelect(floatMask)).Message);
    }
}

/// <summary>
/// float64 tensors on a device (kernels/Elementwise/Float64Kernels.cs): each op and its gradient on float64
/// device tensors (strided views, broadcasting, odd and empty shapes) against the CPU's float64 op, which is
/// the float64 reference; sums also against plain loops. Device libm and .NET's may differ by an ulp or two.
/// </summary>
internal static class DeviceFloat64Checks
{
    private const double Tol = 1e-13;


    private static void Same(Tensor expected, Tensor actual, string what, double tol)
    {
        Assert.True(ShapeUtil.SameShape(expected.Shape, actual.Shape), $"{what}: shape {ShapeUtil.Format(actual.Shape)}, expected {ShapeUtil.Format(expected.Shape)}");
        Assert.Equal(expected.DType, actual.DType);
        if (expected.DType == DType.Bool)
        {
            using var hb = actual.To(Device.Cpu);
            Assert.Equal(expected.ToArray<bool>(), hb.ToArray<bool>());
            return;
        }
        var e = expected.ToArray<double>();
        using var host = actual.To(Device.Cpu);
        var a = host.ToArray<double>();
        for (int i = 0; i < e.Length; i++)
        {
            if (double.IsNaN(e[i]) || double.IsInfinity(e[i])) { Assert.True(e[i].Equals(a[i]), $"{what}[{i}]: {a[i]}, expected {e[i]}"); continue; }
            Assert.True(Math.Abs(e[i] - a[i]) <= tol * (1 + Math.Abs(e[i])), $"{what}[{i}]: {a[i]:R}, expected {e[i]:R}");
        }
    }

    private static void Differential(Device device, string what, Tensor[] inputs, Func<Tensor[], Tensor> f, double tol = Tol, bool grad = true)
    {
        var rng = new Random(TestUtil.StableSeed("float64 " + what));
        bool Float(Tensor t) => t.DType == DType.Float64;
        var cpu = inputs.Select(t => Float(t) && grad ? t.Detach().RequiresGrad_() : t.Alias()).ToArray();
        var dev = inputs.Select(t =>
        {
            var d = Float(t) ? TestUtil.StridedOn(t, device) : t.To(device);
            return Float(t) && grad ? d.Detach().RequiresGrad_() : d;
        }).ToArray();
        try
        {
            using var y = f(cpu);
            using var dy = f(dev);
            Assert.Equal(device, dy.Device);
            Same(y, dy, what, tol);
            if (!grad || y.DType != DType.Float64 || y.NumEl == 0) return;
            using var w = TestUtil.Random(rng, y.ShapeArray(), DType.Float64);
            using var dw = w.To(device);
            using (var s = y.Mul(w).Sum()) s.Backward();
            using (var s = dy.Mul(dw).Sum()) s.Backward();
            for (int i = 0; i < cpu.Length; i++)
            {
                if (!cpu[i].RequiresGrad) continue;
                Assert.True(cpu[i].Grad is not null && dev[i].Grad is not null, $"{what}: input {i} has no gradient");
                Same(cpu[i].Grad!, dev[i].Grad!, $"{what}: gradient of input {i}", tol * 10);
            }
        }
        finally
        {
            foreach (var t in cpu.Concat(dev)) t.Dispose();
        }
    }

    public static void Elementwise(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("float64 elementwise"));
        foreach (var shape in new long[][] { [7], [3, 5], [1, 9], [2, 3, 5], [0, 4] })
        {
            string s = ShapeUtil.Format(shape);
            using var x = TestUtil.Random(rng, shape, DType.Float64, -3, 3);
            using var pos = TestUtil.Random(rng, shape, DType.Float64, 0.1, 3);
            using var b = TestUtil.Random(rng, [shape[^1]], DType.Float64, 0.5, 2);
            Differential(device, $"add sub mul div {s} (broadcast)", [x, b], t =>
            {
                using var sum = t[0].Add(t[1]);
                using var diff = sum.Sub(t[1].Mul(0.5));
                using var prod = diff.Mul(t[1]);
                return prod.Div(t[1].Add(1.0));
            });
            Differential(device, $"maximum minimum clamp {s}", [x, b], t =>
            {
                using var mx = t[0].Maximum(t[1]);
                using var mn = t[0].Minimum(t[1]);
                using var c = t[0].Clamp(-1.0, 1.5);
                using var m = mx.Add(mn);
                return m.Add(c);
            });
            Differential(device, $"pow {s}", [pos, b], t => t[0].Pow(t[1]), tol: 1e-12);
            Differential(device, $"pow scalar {s}", [x], t => t[0].Pow(3.0), tol: 1e-12);
            foreach (var (name, op) in new (string, Func<Tensor, Tensor>)[]
            {
                ("exp", v => v.Exp()), ("tanh", v => v.Tanh()), ("sigmoid", v => v.Sigmoid()),
                ("silu", v => v.Silu()), ("relu", v => v.Relu()), ("neg", v => v.Neg()), ("sign", v => v.Sign()),
            })
                Differential(device, $"{name} {s}", [x], t => op(t[0]), tol: 1e-12);
            foreach (var (name, op) in new (string, Func<Tensor, Tensor>)[] { ("log", v => v.Log()), ("sqrt", v => v.Sqrt()), ("rsqrt", v => v.Rsqrt()) })
                Differential(device, $"{name} {s}", [pos], t => op(t[0]), tol: 1e-12);
            Differential(device, $"gt eq {s}", [x, b], t => t[0].Gt(t[1]), grad: false);
            Differential(device, $"where {s}", [x, b], t =>
            {
                using var c = t[0].Gt(0.0);
                return Tensor.Where(c, t[0], t[1]);
            });
            Differential(device, $"to float32 and back {s}", [x], t =>
            {
                using var f = t[0].To(DType.Float32);
                return f.To(DType.Float64);
            });
        }
        using var mixed32 = Tensor.FromArray([1.5f, 2f, -3f], 3).To(device);
        using var mixed64 = Tensor.FromArray([0.25, 1e-10, 2.0], 3).To(device);
        using var promoted = mixed32.Add(mixed64); // float32 + float64 → float64 (converted on the device)
        Assert.Equal(DType.Float64, promoted.DType);
        Assert.Equal([1.75, 2 + 1e-10, -1.0], promoted.ToArray<double>());
        Assert.Contains("sin of a float64 tensor", Assert.Throws<NotSupportedException>(() => mixed64.Sin()).Message); // no float64 sin/cos kernel (CUDA's needs a stack frame)
        using var ints = Tensor.FromArray([1L, 2L, 3L], 3).To(device);
        Assert.Contains("float64", Assert.Throws<NotSupportedException>(() => ints.Add(mixed64)).Message);
    }

    public static void Reductions(Device device)
    {
        var rng = new Random(TestUtil.StableSeed("float64 reductions"));
        foreach (var shape in new long[][] { [7], [3, 5], [1, 9], [4, 1], [2, 3, 5], [3, 300], [2, 0, 3] })
        {
            string s = ShapeUtil.Format(shape);
            using var x = TestUtil.Random(rng, shape, DType.Float64, -3, 3);
            for (int d = 0; d < shape.Length; d++)
            {
                int dim = d;
                Differential(device, $"sum {s} dim {dim}", [x], t => t[0].Sum(dim), tol: 1e-13);
                Differential(device, $"mean {s} dim {dim} keepdim", [x], t => t[0].Mean(dim, keepDim: true), tol: 1e-13);
                if (shape[d] == 0 && x.NumEl == 0) continue;
                Differential(device, $"max {s} dim {dim}", [x], t => t[0].Max(dim), tol: 0);
                Differential(device, $"min {s} dim {dim}", [x], t => t[0].Min(dim), tol: 0);
            }
            Differential(device, $"sum {s} all", [x], t => t[0].Sum(), tol: 1e-13);
            // Plain-loop reference of the whole sum.
            using var dx = TestUtil.StridedOn(x, device);
            using var total = dx.Sum();
            double expected = x.ToArray<double>().Sum(), absSum = x.ToArray<double>().Sum(Math.Abs);
            Assert.True(Math.Abs(total.ToDouble() - expected) <= 1e-14 * (1 + absSum), $"sum {s}: {total.ToDouble():R}, loops {expected:R}");
        }
    }
}

/// <summary>The new device ops on the emulator.</summary>
public class EmulatorMathOpTests
{
    private static readonly Device Emulator = Device.Parse("emulator");

    [Fact] public void MinArgMinMatchCpu() => DeviceMathOpChecks.MinArgMin(Emulator);
    [Fact] public void LogSumExpMatchesCpu() => DeviceMathOpChecks.LogSumExp(Emulator);
    [Fact] public void ClampPowMaximumMatchCpu() => DeviceMathOpChecks.ClampPowMaximum(Emulator);
    [Fact] public void AbsErfGeluMatchCpu() => DeviceMathOpChecks.AbsErfGelu(Emulator);
    [Fact] public void LogicalOpsMatchCpu() => DeviceMathOpChecks.Logical(Emulator);
    [Fact] public void IndexAddMatchesCpu() => DeviceMathOpChecks.IndexAdd(Emulator);
    [Fact] public void MaskedSelectMatchesCpu() => DeviceMathOpChecks.MaskedSelect(Emulator);
    [Fact] public void Float64ElementwiseMatchesCpu() => DeviceFloat64Checks.Elementwise(Emulator);
    [Fact] public void Float64ReductionsMatchCpu() => DeviceFloat64Checks.Reductions(Emulator);
}

/// <summary>The new device ops on OpenCL (PoCL).</summary>
public class OpenCLMathOpTests
{
    private static readonly Device OpenCL = Device.Parse("opencl:0");

    [BackendFact("opencl")] public void MinArgMinMatchCpu() => DeviceMathOpChecks.MinArgMin(OpenCL);
    [BackendFact("opencl")] public void LogSumExpMatchesCpu() => DeviceMathOpChecks.LogSumExp(OpenCL);
    [BackendFact("opencl")] public void ClampPowMaximumMatchCpu() => DeviceMathOpChecks.ClampPowMaximum(OpenCL);
    [BackendFact("opencl")] public void AbsErfGeluMatchCpu() => DeviceMathOpChecks.AbsErfGelu(OpenCL);
    [BackendFact("opencl")] public void LogicalOpsMatchCpu() => DeviceMathOpChecks.Logical(OpenCL);
    [BackendFact("opencl")] public void IndexAddMatchesCpu() => DeviceMathOpChecks.IndexAdd(OpenCL);
    [BackendFact("opencl")] public void MaskedSelectMatchesCpu() => DeviceMathOpChecks.MaskedSelect(OpenCL);
    [BackendFact("opencl")] public void Float64ElementwiseMatchesCpu() => DeviceFloat64Checks.Elementwise(OpenCL);
    [BackendFact("opencl")] public void Float64ReductionsMatchCpu() => DeviceFloat64Checks.Reductions(OpenCL);
}
