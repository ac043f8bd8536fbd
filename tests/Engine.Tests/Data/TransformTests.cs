using Engine.Data;
using Engine.Data.Transforms;
using Engine.Tensors;

namespace Engine.Tests.Data;

public class TransformTests
{
    private static ImageBatch RandomBatch(int n, int c, int h, int w, int seed)
    {
        var rng = new Random(seed);
        var data = new float[n * c * h * w];
        for (int i = 0; i < data.Length; i++) data[i] = (float)rng.NextDouble();
        return new ImageBatch(data, n, c, h, w);
    }

    private static ImageBatch Copy(ImageBatch b) => new((float[])b.Data.Clone(), b.Count, b.Channels, b.Height, b.Width);

    [Fact]
    public void Normalize_IsSubtractThenDivide_PerChannel()
    {
        var batch = RandomBatch(5, 3, 7, 9, 1);
        var input = (float[])batch.Data.Clone();
        float[] mean = [0.1f, 0.5f, 0.9f], std = [0.2f, 0.3f, 1.7f];
        var output = new Normalize(mean, std).Apply(batch, new Generator(0));
        int plane = 7 * 9;
        for (int i = 0; i < input.Length; i++)
        {
            int c = i / plane % 3;
            Assert.Equal((input[i] - mean[c]) / std[c], output.Data[i]);
        }

        var single = RandomBatch(2, 1, 28, 28, 2);
        var x = (float[])single.Data.Clone();
        Normalize.FashionMnist().Apply(single, new Generator(0));
        for (int i = 0; i < x.Length; i++) Assert.Equal((x[i] - 0.2860f) / 0.3530f, single.Data[i]);
        Assert.Equal([0.2860f], Normalize.FashionMnist().Mean);
        Assert.Equal([0.3530f], Normalize.FashionMnist().Std);
    }

    [Fact]
    public void Normalize_RejectsBadStatistics()
    {
        Assert.Contains("Normalize", Assert.Throws<ArgumentException>(() => new Normalize([0.1f, 0.2f], [0.3f])).Message);
        Assert.Contains("standard deviation 0", Assert.Throws<ArgumentException>(() => new Normalize(0.5f, 0f)).Message);
        var e = Assert.Throws<ArgumentException>(() => new Normalize([0.1f, 0.2f], [1f, 1f]).Apply(RandomBatch(1, 3, 2, 2, 0), new Generator(0)));
        Assert.Contains("2 channel statistics for images of 3 channels", e.Message);
    }

    /// <summary>Reference crop: build the zero-padded image explicitly, then slice the window.</summary>
    private static float[] ReferenceCrop(ImageBatch b, int size, int pad, long[] tops, long[] lefts)
    {
        int ph = b.Height + 2 * pad, pw = b.Width + 2 * pad;
        var output = new float[b.Count * b.Channels * size * size];
        for (int n = 0; n < b.Count; n++)
            for (int c = 0; c < b.Channels; c++)
            {
                var padded = new float[ph, pw];
                for (int y = 0; y < b.Height; y++)
                    for (int x = 0; x < b.Width; x++)
                        padded[y + pad, x + pad] = b.Data[((n * b.Channels + c) * b.Height + y) * b.Width + x];
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++)
                        output[((n * b.Channels + c) * size + y) * size + x] = padded[tops[n] + y, lefts[n] + x];
            }
        return output;
    }

    [Theory]
    [InlineData(9, 1, 28, 28, 28, 4)] // the CIFAR/Fashion-MNIST augmentation
    [InlineData(6, 3, 5, 6, 3, 1)]   // smaller than the input, several channels, non-square
    [InlineData(4, 2, 5, 5, 5, 0)]   // no padding, full size: the identity
    [InlineData(7, 1, 3, 4, 9, 3)]   // larger than the input: windows mostly padding
    [InlineData(0, 1, 4, 4, 4, 2)]   // empty batch
    public void RandomCrop_MatchesThePaddedReference_WithOffsetsFromTheSameGenerator(int n, int c, int h, int w, int size, int pad)
    {
        var batch = RandomBatch(n, c, h, w, n + size);
        var input = Copy(batch);
        var g = new Generator(123);
        var output = new RandomCrop(size, pad).Apply(batch, g);

        var r = new Generator(123);
        long[] tops, lefts;
        using (var t = Tensor.RandInt(0, h + 2 * pad - size + 1, [n], r)) tops = t.ToArray<long>();
        using (var l = Tensor.RandInt(0, w + 2 * pad - size + 1, [n], r)) lefts = l.ToArray<long>();
        Assert.Equal(r.GetState(), g.GetState());
        Assert.Equal((n, c, size, size), (output.Count, output.Channels, output.Height, output.Width));
        Assert.Equal(ReferenceCrop(input, size, pad, tops, lefts), output.Data);
        if (n >= 6 && h + 2 * pad - size > 0) Assert.True(tops.Distinct().Count() > 1, "crop offsets should vary across images");
    }

    [Fact]
    public void RandomCrop_RejectsACropThatDoesNotFit()
    {
        var e = Assert.Throws<ArgumentException>(() => new RandomCrop(33, 2).Apply(RandomBatch(1, 1, 28, 28, 0), new Generator(0)));
        Assert.Contains("RandomCrop", e.Message);
        Assert.Contains("28×28 padded by 2", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RandomCrop(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RandomCrop(3, -1));
    }

    private static float[] ReferenceFlip(ImageBatch b, bool[] flip)
    {
        var output = new float[b.Data.Length];
        for (int n = 0; n < b.Count; n++)
            for (int c = 0; c < b.Channels; c++)
                for (int y = 0; y < b.Height; y++)
                    for (int x = 0; x < b.Width; x++)
                    {
                        int row = ((n * b.Channels + c) * b.Height + y) * b.Width;
                        output[row + x] = b.Data[row + (flip[n] ? b.Width - 1 - x : x)];
                    }
        return output;
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    [InlineData(0.3)]
    [InlineData(1.0)]
    public void RandomHorizontalFlip_MatchesTheReference(double p)
    {
        var batch = RandomBatch(40, 2, 3, 5, 7);
        var input = Copy(batch);
        var g = new Generator(99);
        var output = new RandomHorizontalFlip(p).Apply(batch, g);

        var r = new Generator(99);
        float[] u;
        using (var t = Tensor.Rand([40], DType.Float32, r)) u = t.ToArray<float>();
        Assert.Equal(r.GetState(), g.GetState());
        var flip = u.Select(v => v < p).ToArray();
        if (p == 0) Assert.DoesNotContain(true, flip);
        if (p == 1) Assert.DoesNotContain(false, flip);
        if (p == 0.5) Assert.InRange(flip.Count(f => f), 8, 32);
        Assert.Equal(ReferenceFlip(input, flip), output.Data);
        Assert.Throws<ArgumentOutOfRangeException>(() => new RandomHorizontalFlip(1.5));
    }

    [Fact]
    public void Compose_AppliesInOrder_AndWorksOnTensors()
    {
        var crop = new RandomCrop(28, 4);
        var flip = new RandomHorizontalFlip();
        var norm = Normalize.FashionMnist();
        var batch = RandomBatch(8, 1, 28, 28, 3);

        var g1 = new Generator(5);
        var expected = norm.Apply(flip.Apply(crop.Apply(Copy(batch), g1), g1), g1);
        var g2 = new Generator(5);
        var composed = new Compose(crop, flip, norm).Apply(Copy(batch), g2);
        Assert.Equal(expected.Data, composed.Data);

        using var x = batch.ToTensor();
        var g3 = new Generator(5);
        using var y = new Compose(crop, flip, norm).Apply(x, g3);
        Assert.Equal([8L, 1, 28, 28], y.ShapeArray());
        Assert.Equal(expected.Data, y.ToArray<float>());
        Assert.Equal(batch.Data, x.ToArray<float>()); // the input tensor is unchanged
        Assert.Equal(g1.GetState(), g3.GetState());
    }
}
