using Engine.Data;
using Engine.Data.Transforms;

namespace Engine.Tests.Data;

/// <summary>
/// The installed Fashion-MNIST (Debian dataset-fashion-mnist). Skipped with the reason when the files
/// are absent, unless ENGINE_REQUIRE_BACKENDS names "fashion-mnist" (CI), where it must run.
/// </summary>
public class FashionMnistRealDataTests
{
    [BackendFact("fashion-mnist")]
    public void InstalledData_HasTheKnownCountsHistogramAndStatistics()
    {
        var train = FashionMnist.Load(FashionMnist.Split.Train);
        var test = FashionMnist.Load(FashionMnist.Split.Test);
        Assert.Equal(60000, train.Count);
        Assert.Equal(10000, test.Count);
        Assert.All(train.LabelHistogram(), c => Assert.Equal(6000, c));
        Assert.All(test.LabelHistogram(), c => Assert.Equal(1000, c));

        // Pixel statistics of the training set in [0, 1], accumulated in double over the bytes.
        var pixels = train.Pixels;
        long sum = 0, sumSq = 0;
        foreach (byte b in pixels) { sum += b; sumSq += b * b; }
        double n = pixels.Length;
        double mean = sum / n / 255, std = Math.Sqrt(sumSq / n / (255.0 * 255) - mean * mean);
        Assert.Equal(0.2860, mean, 4e-4);
        Assert.Equal(0.3530, std, 4e-4);
        Assert.Equal(FashionMnist.Mean, Math.Round(mean, 4), 1e-6);
        Assert.Equal(FashionMnist.Std, Math.Round(std, 4), 1e-6);

        // A short normalized pass over the test split: normalized values have mean ≈ 0.
        var loader = new DataLoader(test, 1000, seed: 1, transform: Normalize.FashionMnist(), limit: 2000);
        double total = 0;
        long count = 0;
        foreach (var batch in loader)
            using (batch)
                foreach (var v in batch.Images.ToArray<float>()) { total += v; count++; }
        Assert.Equal(2000L * 784, count);
        Assert.InRange(total / count, -0.1, 0.1);
    }
}
