using Engine.Tensors;

namespace Engine.Tests.Ops;

public class IndexingTests
{
    private static double[] Values(Tensor t) => t.To(DType.Float64).ToArray<double>();

    private static Tensor Index(long[] values, long[] shape, DType dtype = DType.Int64)
    {
        using var t = Tensor.FromArray(values, shape);
        return dtype == DType.Int64 ? t.Clone() : t.To(dtype);
    }

    private static long[] RandomIndices(Random rng, long n, long size) => Enumerable.Range(0, (int)n).Select(_ => (long)rng.Next((int)size)).ToArray();

    private static long Offset(long[] idx, long[] shape)
    {
        long flat = 0;
        for (int d = 0; d < shape.Length; d++) flat = flat * shape[d] + idx[d];
        return flat;
    }

    // ------------------------------------------------------------------ cat / stack

    public static IEnumerable<object[]> CatCases()
    {
        yield return [new long[][] { [2, 3], [4, 3] }, 0];
        yield return [new long[][] { [2, 3], [2, 1], [2, 5] }, 1];
        yield return [new long[][] { [2, 3], [2, 1], [2, 5] }, -1];
        yield return [new long[][] { [2, 0, 4], [2, 3, 4], [2, 1, 4] }, 1];
        yield return [new long[][] { [3, 2, 5], [3, 2, 7] }, 2];
        yield return [new long[][] { [7] }, 0];
        yield return [new long[][] { [5], [0], [3] }, 0];
        yield return [new long[][] { [33, 17], [1, 17], [130, 17] }, 0];
    }

    [Theory]
    [MemberData(nameof(CatCases))]
    public void Cat_MatchesReference(long[][] shapes, int dim)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int64, DType.Bool })
        {
            var rng = new Random(1);
            var data = shapes.Select(s => TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(s), 0, 3).Select(Math.Floor).ToArray()).ToArray();
            var tensors = shapes.Select((s, i) =>
            {
                using var t = TestUtil.FromDoubles(data[i], s, dtype);
                return i % 2 == 1 ? TestUtil.NonContiguous(t) : t.Clone();
            }).ToArray();
            using var y = Tensor.Cat(tensors, dim);
            int d = dim < 0 ? dim + shapes[0].Length : dim;
            long outer = TestUtil.ShapeNumEl(shapes[0][..d]);
            long inner = TestUtil.ShapeNumEl(shapes[0][(d + 1)..]);
            var expected = new List<double>();
            for (long o = 0; o < outer; o++)
                for (int i = 0; i < shapes.Length; i++)
                {
                    long block = shapes[i][d] * inner;
                    expected.AddRange(data[i].Skip((int)(o * block)).Take((int)block).Select(v => dtype == DType.Bool ? (v != 0 ? 1 : 0) : v));
                }
            var outShape = (long[])shapes[0].Clone();
            outShape[d] = shapes.Sum(s => s[d]);
            Assert.Equal(outShape, y.ShapeArray());
            Assert.Equal(dtype, y.DType);
            Assert.Equal(expected.ToArray(), Values(y));
            foreach (var t in tensors) t.Dispose();
        }
    }

    [Fact]
    public void Cat_SkipsLegacyEmptyOneDimTensors()
    {
        using var a = Tensor.Ones([2, 3]);
        using var e = Tensor.Empty([0]);
        using var y = Tensor.Cat([a, e, a], 0);
        Assert.Equal([4, 3], y.ShapeArray());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(-1)]
    public void Stack_MatchesReference(int dim)
    {
        var rng = new Random(2);
        long[] shape = [3, 4];
        var data = Enumerable.Range(0, 3).Select(_ => TestUtil.RandomValues(rng, 12)).ToArray();
        var tensors = data.Select((v, i) => { using var t = TestUtil.FromDoubles(v, shape, DType.Float64); return i == 1 ? TestUtil.NonContiguous(t) : t.Clone(); }).ToArray();
        using var y = Tensor.Stack(tensors, dim);
        int d = dim < 0 ? dim + 3 : dim;
        var outShape = shape.ToList();
        outShape.Insert(d, 3);
        Assert.Equal(outShape.ToArray(), y.ShapeArray());
        var got = Values(y);
        for (long f = 0; f < got.Length; f++)
        {
            var idx = TestUtil.Unravel(f, outShape.ToArray()).ToList();
            long which = idx[d];
            idx.RemoveAt(d);
            Assert.Equal(data[which][Offset(idx.ToArray(), shape)], got[f]);
        }
        foreach (var t in tensors) t.Dispose();
    }

    // ------------------------------------------------------------------ index_select / index_add

    [Theory]
    [InlineData(0, DType.Int64)]
    [InlineData(1, DType.Int32)]
    [InlineData(2, DType.Int64)]
    [InlineData(-1, DType.Int32)]
    public void IndexSelect_MatchesReference(int dim, DType indexType)
    {
        var rng = new Random(3);
        long[] shape = [5, 7, 3];
        var x = TestUtil.RandomValues(rng, 105);
        using var t0 = TestUtil.FromDoubles(x, shape, DType.Float32);
        using var t = TestUtil.NonContiguous(t0);
        int d = dim < 0 ? dim + 3 : dim;
        var idx = RandomIndices(rng, 9, shape[d]).Concat([shape[d] - 1, 0, 0]).ToArray();
        using var index = Index(idx, [idx.Length], indexType);
        using var y = t.IndexSelect(dim, index);
        var outShape = (long[])shape.Clone();
        outShape[d] = idx.Length;
        Assert.Equal(outShape, y.ShapeArray());
        var got = Values(y);
        for (long f = 0; f < got.Length; f++)
        {
            var m = TestUtil.Unravel(f, outShape);
            m[d] = idx[m[d]];
            Assert.Equal((double)(float)x[Offset(m, shape)], got[f]);
        }

        using var scalarIndex = Tensor.FromArray([2L], []);
        using var one = t.IndexSelect(0, scalarIndex);
        Assert.Equal([1, 7, 3], one.ShapeArray());
        using var empty = Tensor.Empty([0], DType.Int64);
        using var none = t.IndexSelect(1, empty);
        Assert.Equal([5, 0, 3], none.ShapeArray());
    }

    [Fact]
    public void IndexAdd_MatchesReference_WithRepeatedIndices()
    {
        var rng = new Random(4);
        long[] shape = [4, 6, 3];
        var x = TestUtil.RandomValues(rng, 72);
        long[] idx = [5, 0, 5, 2, 5];
        var src = TestUtil.RandomValues(rng, 4 * 5 * 3);
        using var t = TestUtil.FromDoubles(x, shape, DType.Float64);
        using var s = TestUtil.FromDoubles(src, [4, 5, 3], DType.Float64);
        using var index = Index(idx, [5]);
        using var y = t.IndexAdd(1, index, s);
        var expected = (double[])x.Clone();
        for (long f = 0; f < src.Length; f++)
        {
            var m = TestUtil.Unravel(f, [4, 5, 3]);
            m[1] = idx[m[1]];
            expected[Offset(m, shape)] += src[f];
        }
        TestUtil.AssertClose(expected, y, 1e-12, 1e-12);
        Assert.Equal(x, Values(t)); // out of place
    }

    // ------------------------------------------------------------------ gather / scatter_add

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void Gather_MatchesReference(int dim)
    {
        var rng = new Random(5);
        long[] shape = [4, 6, 5];
        long[] idxShape = [3, 5, 4];
        idxShape[dim] = 9; // may exceed self along dim
        var x = TestUtil.RandomValues(rng, 120);
        var idx = RandomIndices(rng, TestUtil.ShapeNumEl(idxShape), shape[dim]);
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int32 })
        {
            using var t0 = TestUtil.FromDoubles(x.Select(v => Math.Round(v * 100)).ToArray(), shape, dtype);
            using var t = TestUtil.NonContiguous(t0);
            using var i0 = Index(idx, idxShape, DType.Int32);
            using var index = TestUtil.NonContiguous(i0);
            using var y = t.Gather(dim, index);
            Assert.Equal(idxShape, y.ShapeArray());
            var got = Values(y);
            for (long f = 0; f < got.Length; f++)
            {
                var m = TestUtil.Unravel(f, idxShape);
                m[dim] = idx[f];
                Assert.Equal(Math.Round(x[Offset(m, shape)] * 100), got[f]);
            }
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void ScatterAdd_MatchesReference(int dim)
    {
        var rng = new Random(6);
        long[] shape = [4, 6, 5];
        long[] idxShape = [3, 5, 2];
        idxShape[dim] = 8;
        long[] srcShape = idxShape.Select(s => s + 1).ToArray();
        var x = TestUtil.RandomValues(rng, 120);
        var src = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(srcShape));
        var idx = RandomIndices(rng, TestUtil.ShapeNumEl(idxShape), shape[dim]);
        using var t = TestUtil.FromDoubles(x, shape, DType.Float64);
        using var s0 = TestUtil.FromDoubles(src, srcShape, DType.Float64);
        using var s = TestUtil.NonContiguous(s0);
        using var index = Index(idx, idxShape);
        using var y = t.ScatterAdd(dim, index, s);
        var expected = (double[])x.Clone();
        for (long f = 0; f < idx.Length; f++)
        {
            var m = TestUtil.Unravel(f, idxShape);
            double v = src[Offset(m, srcShape)];
            m[dim] = idx[f];
            expected[Offset(m, shape)] += v;
        }
        TestUtil.AssertClose(expected, y, 1e-12, 1e-12);

        // The row-parallel path (dim = last) on a large input, float32.
        long[] big = [300, 400];
        var bidx = RandomIndices(rng, 300 * 250, 400);
        var bsrc = TestUtil.RandomValues(rng, 300 * 250);
        using var zeros = Tensor.Zeros(big);
        using var bs = TestUtil.FromDoubles(bsrc, [300, 250]);
        using var bi = Index(bidx, [300, 250]);
        using var by = zeros.ScatterAdd(1, bi, bs);
        var bexp = new double[300 * 400];
        for (long f = 0; f < bidx.Length; f++) bexp[f / 250 * 400 + bidx[f]] += (float)bsrc[f];
        TestUtil.AssertClose(bexp, by, 1e-5, 1e-5);
    }

    // ------------------------------------------------------------------ one_hot and masks

    [Fact]
    public void OneHot_MatchesReference()
    {
        long[] labels = [2, 0, 4, 4, 1, 3];
        using var l = Index(labels, [2, 3], DType.Int32);
        using var y = Tensor.OneHot(l, 6);
        Assert.Equal([2, 3, 6], y.ShapeArray());
        Assert.Equal(DType.Int64, y.DType);
        var got = y.ToArray<long>();
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 6; c++) Assert.Equal(labels[i] == c ? 1 : 0, got[i * 6 + c]);
        using var inferred = Tensor.OneHot(l);
        Assert.Equal([2, 3, 5], inferred.ShapeArray());
    }

    [Theory]
    [InlineData(new long[] { 4, 5 }, new long[] { 1, 5 })]
    [InlineData(new long[] { 4, 5 }, new long[] { 3, 4, 5 })]
    [InlineData(new long[] { 4, 1 }, new long[] { 4, 6 })]
    [InlineData(new long[] { 0, 3 }, new long[] { 3 })]
    [InlineData(new long[] { 130, 1031 }, new long[] { 130, 1031 })]
    public void MaskedFill_And_MaskedSelect_MatchReference(long[] xShape, long[] maskShape)
    {
        var rng = new Random(7);
        var x = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(xShape));
        var mask = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(maskShape)).Select(v => v > 0).ToArray();
        var maskValues = mask.Select(b => b ? 1.0 : 0.0).ToArray();
        var outShape = TestUtil.BroadcastShape(xShape, maskShape);
        using var m = Tensor.FromArray(mask, maskShape);
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int64 })
        {
            var xv = x.Select(v => dtype == DType.Int64 ? Math.Round(v * 10) : v).ToArray();
            using var t0 = TestUtil.FromDoubles(xv, xShape, dtype);
            using var t = TestUtil.NonContiguous(t0);
            using var filled = t.MaskedFill(m, -7);
            using var selected = t.MaskedSelect(m);
            Assert.Equal(outShape, filled.ShapeArray());
            var fillExpected = new List<double>();
            var selectExpected = new List<double>();
            for (long f = 0; f < TestUtil.ShapeNumEl(outShape); f++)
            {
                var idx = TestUtil.Unravel(f, outShape);
                double v = TestUtil.BroadcastRead(xv, xShape, idx);
                if (dtype == DType.Float32) v = (float)v;
                bool on = TestUtil.BroadcastRead(maskValues, maskShape, idx) != 0;
                fillExpected.Add(on ? -7 : v);
                if (on) selectExpected.Add(v);
            }
            Assert.Equal(fillExpected.ToArray(), Values(filled));
            Assert.Equal([selectExpected.Count], selected.ShapeArray());
            Assert.Equal(selectExpected.ToArray(), Values(selected));
        }
    }

    // ------------------------------------------------------------------ gradients

    [Fact]
    public void GradCheck_CatAndStack()
    {
        var rng = new Random(8);
        using var a = TestUtil.Random(rng, [2, 3], DType.Float64).RequiresGrad_();
        using var b = TestUtil.Random(rng, [2, 2], DType.Float64).RequiresGrad_();
        using var c = TestUtil.Random(rng, [2, 1], DType.Float64);
        GradCheck.Check(x => Tensor.Cat([x[0], x[2], x[1]], 1), [a, b, c]);
        GradCheck.Check(x => Tensor.Cat([x[0].T, x[1].T], 0), [a, b]);
        using var d = TestUtil.Random(rng, [2, 3], DType.Float64).RequiresGrad_();
        GradCheck.Check(x => Tensor.Stack([x[0], x[1], x[0]], 1), [a, d]);
        GradCheck.CheckSecondOrder(x => Tensor.Stack([x[0], x[1]], 0) * Tensor.Cat([x[1].Unsqueeze(0), x[0].Unsqueeze(0)], 0), [a, d]);
    }

    [Fact]
    public void GradCheck_IndexSelectAndIndexAdd()
    {
        var rng = new Random(9);
        using var x = TestUtil.Random(rng, [4, 5], DType.Float64).RequiresGrad_();
        using var index = Index([3, 0, 3, 1], [4]);
        GradCheck.Check(i => i[0].IndexSelect(1, index), [x]);
        GradCheck.Check(i => i[0].IndexSelect(0, index), [x]);
        using var src = TestUtil.Random(rng, [4, 4], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => i[0].IndexAdd(1, index, i[1]), [x, src]);
        GradCheck.CheckSecondOrder(i => i[0].IndexSelect(1, index) * i[0].IndexSelect(1, index), [x]);
    }

    [Fact]
    public void GradCheck_GatherAndScatterAdd()
    {
        var rng = new Random(10);
        using var x = TestUtil.Random(rng, [3, 5], DType.Float64).RequiresGrad_();
        using var index = Index([4, 0, 4, 1, 2, 2, 0, 3, 3, 1, 0, 0], [3, 4]);
        GradCheck.Check(i => i[0].Gather(1, index), [x]);
        using var index0 = Index([2, 0, 1, 1, 2, 0, 0, 1, 2, 2, 1, 0], [4, 3]);
        GradCheck.Check(i => i[0].Gather(0, index0), [x]);

        using var src = TestUtil.Random(rng, [4, 6], DType.Float64).RequiresGrad_(); // larger than the index
        GradCheck.Check(i => i[0].ScatterAdd(1, index, i[1]), [x, src]);
        using var src0 = TestUtil.Random(rng, [4, 3], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => i[0].ScatterAdd(0, index0, i[1]), [x, src0]);
    }

    [Fact]
    public void SecondOrder_GatherAndScatterAdd()
    {
        var rng = new Random(11);
        using var x = TestUtil.Random(rng, [3, 5], DType.Float64).RequiresGrad_();
        using var index = Index([4, 0, 4, 1, 2, 2, 0, 3, 3, 1, 0, 0], [3, 4]);
        GradCheck.CheckSecondOrder(i => { using var g = i[0].Gather(1, index); return g * g; }, [x]);
        using var src = TestUtil.Random(rng, [3, 4], DType.Float64).RequiresGrad_();
        GradCheck.CheckSecondOrder(i => { using var s = i[0].ScatterAdd(1, index, i[1]); return s * s; }, [x, src]);
    }

    [Fact]
    public void GradCheck_Masks()
    {
        var rng = new Random(12);
        using var x = TestUtil.Random(rng, [1, 5], DType.Float64).RequiresGrad_();
        using var m2 = Tensor.FromArray(Enumerable.Range(0, 20).Select(i => i % 3 == 0).ToArray(), [4, 5]);
        GradCheck.Check(i => i[0].MaskedFill(m2, 2.5), [x]);
        GradCheck.Check(i => i[0].MaskedSelect(m2), [x]);
        using var y = TestUtil.Random(rng, [4, 5], DType.Float64).RequiresGrad_();
        GradCheck.Check(i => i[0].MaskedSelect(m2), [y]);
        GradCheck.CheckSecondOrder(i => { using var s = i[0].MaskedSelect(m2); return s * s; }, [y]);
        GradCheck.CheckSecondOrder(i => { using var s = i[0].MaskedFill(m2, 1); return s * s; }, [y]);
    }

    // ------------------------------------------------------------------ errors

    [Fact]
    public void OutOfRangeIndices_NameOpValueDimAndSize()
    {
        using var x = Tensor.Zeros([3, 7]);
        using var bad = Index([1, 7], [2]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.IndexSelect(1, bad));
        AssertMessage(ex, "index_select", "index 7", "dim 1", "size 7");

        using var neg = Index([0, -1, 0, 0, 0, 0], [3, 2]);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.Gather(1, neg));
        AssertMessage(ex, "gather", "index -1", "dim 1", "size 7");

        using var big = Index([0, 3, 0, 0], [2, 2]);
        using var src = Tensor.Ones([2, 2]);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.ScatterAdd(0, big, src));
        AssertMessage(ex, "scatter_add", "index 3", "dim 0", "size 3");

        using var labels = Index([0, 5], [2]);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.OneHot(labels, 5));
        AssertMessage(ex, "one_hot", "label 5", "5 classes");
    }

    [Fact]
    public void ShapeAndDTypeMismatches_NameBothShapes()
    {
        using var a = Tensor.Zeros([2, 3]);
        using var b = Tensor.Zeros([2, 3, 1]);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Cat([a, b], 0));
        AssertMessage(ex, "cat", "[2, 3]", "[2, 3, 1]");

        using var c = Tensor.Zeros([2, 4], DType.Float64);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Cat([a, c], 1));
        AssertMessage(ex, "cat", "float32", "float64", "[2, 4]");

        using var d = Tensor.Zeros([3, 3]);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Cat([a, d], 1));
        AssertMessage(ex, "cat", "[2, 3]", "[3, 3]");

        ex = Assert.Throws<ArgumentException>(() => Tensor.Stack([a, d], 0));
        AssertMessage(ex, "stack", "[2, 3]", "[3, 3]");

        using var idx1 = Index([0, 1], [2]);
        ex = Assert.Throws<ArgumentException>(() => a.Gather(1, idx1));
        AssertMessage(ex, "gather", "[2]", "[2, 3]");

        using var idxBig = Index([0, 0, 0, 0, 0, 0, 0, 0], [4, 2]);
        ex = Assert.Throws<ArgumentException>(() => a.Gather(1, idxBig));
        AssertMessage(ex, "gather", "[4, 2]", "[2, 3]");

        using var fidx = Tensor.Zeros([2]);
        ex = Assert.Throws<ArgumentException>(() => a.IndexSelect(0, fidx));
        AssertMessage(ex, "index_select", "float32");

        using var fmask = Tensor.Zeros([2, 3]);
        ex = Assert.Throws<ArgumentException>(() => a.MaskedFill(fmask, 1));
        AssertMessage(ex, "masked_fill", "bool");
        using var wrongMask = Tensor.Zeros([4], DType.Bool);
        ex = Assert.Throws<ArgumentException>(() => a.MaskedSelect(wrongMask));
        AssertMessage(ex, "masked_select", "[2, 3]", "[4]");

        using var s = Tensor.Ones([2, 2], DType.Float64);
        using var si = Index([0, 1, 1, 0], [2, 2]);
        ex = Assert.Throws<ArgumentException>(() => a.ScatterAdd(1, si, s));
        AssertMessage(ex, "scatter_add", "float64");
    }

    private static void AssertMessage(Exception ex, params string[] parts)
    {
        foreach (var p in parts) Assert.Contains(p, ex.Message);
    }
}
