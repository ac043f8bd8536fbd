using Engine.Data;

namespace Engine.Tests.Data;

/// <summary>FashionMnist.Load on small synthetic files in a temporary directory.</summary>
public class FashionMnistFileTests
{
    private static (byte[] Pixels, byte[] Labels) Synthetic(int n, int seed)
    {
        var rng = new Random(seed);
        var pixels = new byte[n * 28 * 28];
        rng.NextBytes(pixels);
        var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
        return (pixels, labels);
    }

    private static void WriteSplit(TempDir dir, FashionMnist.Split split, int n, bool gzip, int? labelCount = null, int width = 28)
    {
        var (images, labels) = FashionMnist.FileNames(split);
        var (p, l) = Synthetic(n, (int)split);
        string ext = gzip ? ".gz" : "";
        Idx.Write(dir.File(images + ext), [n, 28, width], p.AsSpan(0, n * 28 * width), gzip);
        int lc = labelCount ?? n;
        Idx.Write(dir.File(labels + ext), [lc], Enumerable.Range(0, lc).Select(i => (byte)(i % 10)).ToArray(), gzip);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Load_ReadsBothSplits_FromADirectory(bool gzip)
    {
        using var dir = new TempDir();
        WriteSplit(dir, FashionMnist.Split.Train, 13, gzip);
        WriteSplit(dir, FashionMnist.Split.Test, 5, gzip);
        Assert.Null(FashionMnist.MissingReason(dir.Path));
        var train = FashionMnist.Load(FashionMnist.Split.Train, dir.Path);
        var test = FashionMnist.Load(FashionMnist.Split.Test, dir.Path);
        Assert.Equal(13, train.Count);
        Assert.Equal(5, test.Count);
        Assert.Equal((1, 28, 28), (train.Channels, train.Height, train.Width));
        Assert.Equal(Synthetic(13, (int)FashionMnist.Split.Train).Pixels, train.Pixels.ToArray());
        Assert.Equal(Synthetic(5, (int)FashionMnist.Split.Test).Labels, test.Labels.ToArray());
        Assert.Equal(10, train.NumClasses);
        Assert.Equal("Ankle boot", train.ClassNames[9]);
        Assert.Equal("fashion-mnist/train", train.Name);

        using var x = train.ImagesTensor();
        using var y = train.LabelsTensor();
        Assert.Equal([13L, 1, 28, 28], x.ShapeArray());
        Assert.Equal(Engine.Tensors.DType.Float32, x.DType);
        Assert.Equal(Engine.Tensors.DType.Int64, y.DType);
        var xs = x.ToArray<float>();
        var px = train.Pixels;
        for (int i = 0; i < xs.Length; i++) Assert.Equal(px[i] / 255f, xs[i]);
        Assert.Equal(train.Labels.ToArray().Select(b => (long)b), y.ToArray<long>());
    }

    [Fact]
    public void MissingData_SaysHowToGetIt()
    {
        using var dir = new TempDir();
        WriteSplit(dir, FashionMnist.Split.Train, 3, gzip: true);
        var e = Assert.Throws<DatasetNotFoundException>(() => FashionMnist.Load(FashionMnist.Split.Test, dir.Path));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("t10k-images-idx3-ubyte.gz", e.Message);
        Assert.Contains("apt-get install dataset-fashion-mnist", e.Message);
        Assert.Contains("--data DIR", e.Message);
        foreach (var f in new[] { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" })
            Assert.Contains(f, e.Message);
        var reason = FashionMnist.MissingReason(dir.Path);
        Assert.NotNull(reason);
        Assert.Contains("t10k-labels-idx1-ubyte.gz", reason);
        Assert.DoesNotContain("missing train", reason);

        var none = Assert.Throws<DatasetNotFoundException>(() => FashionMnist.Load(FashionMnist.Split.Train, dir.File("absent")));
        Assert.Contains("does not exist", none.Message);
    }

    [Fact]
    public void CountMismatch_NamesBothFiles()
    {
        using var dir = new TempDir();
        WriteSplit(dir, FashionMnist.Split.Train, 7, gzip: true, labelCount: 6);
        var e = Assert.Throws<DataFormatException>(() => FashionMnist.Load(FashionMnist.Split.Train, dir.Path));
        Assert.Contains(dir.File("train-images-idx3-ubyte.gz"), e.Message);
        Assert.Contains("7 images but 6 labels", e.Message);
        Assert.Contains(dir.File("train-labels-idx1-ubyte.gz"), e.Message);
    }

    [Fact]
    public void WrongImageSize_AndBadLabel_AreReported()
    {
        using var dir = new TempDir();
        WriteSplit(dir, FashionMnist.Split.Train, 4, gzip: false, width: 27);
        var e = Assert.Throws<DataFormatException>(() => FashionMnist.Load(FashionMnist.Split.Train, dir.Path));
        Assert.Contains(dir.File("train-images-idx3-ubyte"), e.Message);
        Assert.Contains("28×27; expected 28×28", e.Message);

        WriteSplit(dir, FashionMnist.Split.Test, 4, gzip: false);
        var labels = dir.File("t10k-labels-idx1-ubyte");
        Idx.Write(labels, [4], [0, 1, 10, 3]);
        e = Assert.Throws<DataFormatException>(() => FashionMnist.Load(FashionMnist.Split.Test, dir.Path));
        Assert.Equal(labels, e.Path);
        Assert.Contains("label 10 of sample 2", e.Message);
    }

    [Fact]
    public void GzipIsPreferred_WhenBothFormsExist()
    {
        using var dir = new TempDir();
        WriteSplit(dir, FashionMnist.Split.Test, 3, gzip: true);
        WriteSplit(dir, FashionMnist.Split.Test, 3, gzip: false, labelCount: 2); // would fail if read
        Assert.Equal(3, FashionMnist.Load(FashionMnist.Split.Test, dir.Path).Count);
    }
}
