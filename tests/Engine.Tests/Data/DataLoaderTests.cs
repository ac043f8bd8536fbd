using Engine.Data;
using Engine.Data.Transforms;
using Engine.Tensors;

namespace Engine.Tests.Data;

public class DataLoaderTests
{
    /// <summary>
    /// n samples of [1, 4, 5]: sample i's first pixel is i mod 256 and its second i / 256 (so images
    /// identify samples), the rest random; label i mod 10.
    /// </summary>
    private static ImageDataset Numbered(int n, int channels = 1, int seed = 0)
    {
        int size = channels * 4 * 5;
        var pixels = new byte[n * size];
        new Random(seed).NextBytes(pixels);
        for (int i = 0; i < n; i++)
        {
            pixels[i * size] = (byte)(i % 256);
            pixels[i * size + 1] = (byte)(i / 256);
        }
        var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
        return new ImageDataset("numbered", pixels, labels, channels, 4, 5, FashionMnist.ClassNames);
    }

    /// <summary>The sample ids of a batch, read back from the first two pixels.</summary>
    private static long[] Ids(Batch b)
    {
        var x = b.Images.ToArray<float>();
        int n = (int)b.Images.Size(0), size = x.Length / Math.Max(1, n);
        return Enumerable.Range(0, n).Select(i => (long)Math.Round(x[i * size] * 255) + 256 * (long)Math.Round(x[i * size + 1] * 255)).ToArray();
    }

    private static List<long> EpochIds(IEnumerable<Batch> batches)
    {
        var ids = new List<long>();
        foreach (var b in batches)
            using (b) ids.AddRange(Ids(b));
        return ids;
    }

    [Fact]
    public void EveryEpoch_VisitsEverySampleOnce_WithTheRightShapes()
    {
        var data = Numbered(103);
        var loader = new DataLoader(data, batchSize: 32, seed: 5);
        Assert.Equal(4, loader.BatchCount);
        Assert.Equal(103, loader.SamplesPerEpoch);
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var shapes = new List<long[]>();
            var ids = new List<long>();
            foreach (var b in loader)
            {
                using (b)
                {
                    shapes.Add(b.Images.ShapeArray());
                    Assert.Equal(DType.Float32, b.Images.DType);
                    Assert.Equal(DType.Int64, b.Labels.DType);
                    Assert.Equal([b.Images.Size(0)], b.Labels.ShapeArray());
                    var batchIds = Ids(b);
                    Assert.Equal(batchIds.Select(i => i % 10), b.Labels.ToArray<long>());
                    ids.AddRange(batchIds);
                }
            }
            Assert.Equal([[32L, 1, 4, 5], [32L, 1, 4, 5], [32L, 1, 4, 5], [7L, 1, 4, 5]], shapes);
            Assert.Equal(Enumerable.Range(0, 103).Select(i => (long)i), ids.Order());
            Assert.NotEqual(Enumerable.Range(0, 103).Select(i => (long)i), ids); // shuffled
        }
        Assert.Equal(2, loader.Epoch);
    }

    [Fact]
    public void DropLast_SkipsThePartialBatch()
    {
        var loader = new DataLoader(Numbered(103), batchSize: 32, seed: 5, dropLast: true);
        Assert.Equal(3, loader.BatchCount);
        Assert.Equal(96, loader.SamplesPerEpoch);
        var ids = EpochIds(loader.Batches(0));
        Assert.Equal(96, ids.Count);
        Assert.Equal(96, ids.Distinct().Count());
        Assert.Equal(loader.Order(0).Take(96), ids);

        var exact = new DataLoader(Numbered(64), batchSize: 32, dropLast: true);
        Assert.Equal(2, exact.BatchCount);
        Assert.Equal(64, EpochIds(exact.Batches(3)).Count);
    }

    [Fact]
    public void Order_IsDeterministicPerSeedAndEpoch_AndDiffersAcrossThem()
    {
        var data = Numbered(200);
        var a = new DataLoader(data, 16, seed: 42);
        var b = new DataLoader(data, 16, seed: 42);
        var c = new DataLoader(data, 16, seed: 43);
        Assert.Equal(a.Order(0), b.Order(0));
        Assert.Equal(a.Order(7), b.Order(7));
        Assert.NotEqual(a.Order(0), a.Order(1));
        Assert.NotEqual(a.Order(0), c.Order(0));
        Assert.NotEqual(a.Order(1), c.Order(1));

        // The order is Tensor.RandPerm from the epoch generator: key = seed, offset = epoch << 40.
        var g = DataLoader.EpochGenerator(42, 3);
        Assert.Equal(new GeneratorState(42, 3UL << 40), g.GetState());
        var manual = new Generator(42);
        manual.SetState(new GeneratorState(42, 3UL << 40));
        using var perm = Tensor.RandPerm(200, manual);
        Assert.Equal(perm.ToArray<long>(), a.Order(3));

        // Enumerating runs epoch 0, 1, ... in turn; Batches(e) replays epoch e without moving the counter.
        var first = EpochIds(a);
        var second = EpochIds(a);
        Assert.Equal(2, a.Epoch);
        Assert.Equal(a.Order(0), first);
        Assert.Equal(a.Order(1), second);
        Assert.Equal(first, EpochIds(b.Batches(0)));
        Assert.Equal(0, b.Epoch);
        b.Epoch = 1;
        Assert.Equal(second, EpochIds(b));
    }

    [Fact]
    public void WithoutShuffle_OrderIsSequential()
    {
        var loader = new DataLoader(Numbered(37), 10, shuffle: false, seed: 9);
        Assert.Equal(Enumerable.Range(0, 37).Select(i => (long)i), EpochIds(loader));
        Assert.Equal(Enumerable.Range(0, 37).Select(i => (long)i), EpochIds(loader));
    }

    [Fact]
    public void Limit_TakesTheFirstSamples()
    {
        var data = Numbered(100);
        var loader = new DataLoader(data, 8, seed: 1, limit: 20);
        Assert.Equal(20, loader.Dataset.Count);
        Assert.Equal(3, loader.BatchCount);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => (long)i), EpochIds(loader).Order());
        Assert.Equal(data.Pixels[..(20 * 20)].ToArray(), data.Take(20).Pixels.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(data, 8, limit: 101));
    }

    [Fact]
    public void Images_AreThePixelsOverTwoFiftyFive_InTheBatchOrder()
    {
        var data = Numbered(30, channels: 3, seed: 4);
        var loader = new DataLoader(data, 7, seed: 11);
        var order = loader.Order(0);
        int k = 0, size = data.SampleSize;
        foreach (var b in loader)
        {
            using (b)
            {
                Assert.Equal([b.Images.Size(0), 3L, 4, 5], b.Images.ShapeArray());
                var x = b.Images.ToArray<float>();
                for (int s = 0; s < b.Images.Size(0); s++, k++)
                    for (int i = 0; i < size; i++)
                        Assert.Equal(data.Pixels[(int)order[k] * size + i] / 255f, x[s * size + i]);
            }
        }
        Assert.Equal(30, k);
    }

    [Fact]
    public void Transforms_AreReproducible_AndDrawFromTheEpochGeneratorAfterTheOrder()
    {
        var data = Numbered(50, seed: 8);
        var transform = new Compose(new RandomCrop(4, padding: 1), new RandomHorizontalFlip(0.5), new Normalize(0.5f, 0.25f));
        var a = new DataLoader(data, 16, seed: 3, transform: transform);
        var b = new DataLoader(data, 16, seed: 3, transform: transform);

        // Reference: the epoch generator draws the permutation, then each batch's transform in turn.
        var g = DataLoader.EpochGenerator(3, 1);
        using (Tensor.RandPerm(50, g)) { }
        var order = a.Order(1);
        a.Epoch = 1;
        int start = 0;
        foreach (var batch in a)
        {
            using (batch)
            {
                int n = (int)batch.Images.Size(0);
                var x = new float[n * 20];
                var labels = new long[n];
                data.GatherImages(order.AsSpan(start, n), x, labels);
                var expected = transform.Apply(new ImageBatch(x, n, 1, 4, 5), g);
                Assert.Equal([n, 1L, 4, 4], batch.Images.ShapeArray());
                Assert.Equal(expected.Data, batch.Images.ToArray<float>());
                Assert.Equal(labels, batch.Labels.ToArray<long>());
                start += n;
            }
        }
        Assert.Equal(50, start);

        var ea = new List<float[]>();
        foreach (var x in a.Batches(2)) using (x) ea.Add(x.Images.ToArray<float>());
        var eb = new List<float[]>();
        foreach (var x in b.Batches(2)) using (x) eb.Add(x.Images.ToArray<float>());
        Assert.Equal(ea, eb);
    }

    [Fact]
    public void BadArguments_AreRejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(Numbered(3), 0));
        Assert.Contains("DataLoader", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(Numbered(3), 1).Batches(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(Numbered(3), 1).Epoch = -1);
        var bad = Assert.Throws<ArgumentException>(() => new ImageDataset("bad", new byte[20], new byte[2], 1, 4, 5, FashionMnist.ClassNames));
        Assert.Contains("'bad'", bad.Message);
        var label = Assert.Throws<ArgumentException>(() => new ImageDataset("bad", new byte[20], new byte[] { 12 }, 1, 4, 5, FashionMnist.ClassNames));
        Assert.Contains("label 12", label.Message);
    }
}
