using Engine.Distillation.DatasetDistillation;
using Engine.Tensors;
using Engine.Tensors.Serialization;

namespace Engine.Tests.Distillation.DatasetDistillation;

/// <summary>
/// Short runs of DM, DC and MTT on tiny synthetic data (3 classes of 8×8 images: a bright 3×3 square at a
/// class-specific place plus noise). Each run starts from noise, and its objective — measured the same
/// way before and after, with fixed networks and all real images — must drop.
/// </summary>
public class MethodSmokeTests
{
    private static readonly ConvNetSpec Spec = new(Channels: 1, ImageSize: 8, Classes: 3, Width: 4, Depth: 2, Norm: ConvNetNorm.Instance);

    internal static ClassImages TinyData(int perClass, int seed)
    {
        var rng = new Random(seed);
        int n = perClass * 3;
        var x = new float[n * 64];
        var labels = new long[n];
        for (int i = 0; i < n; i++)
        {
            int c = i % 3;
            labels[i] = c;
            for (int p = 0; p < 64; p++) x[i * 64 + p] = (float)(rng.NextDouble() * 0.6 - 0.3);
            int top = c == 2 ? 4 : 1, left = c == 1 ? 4 : 1;
            for (int y = 0; y < 3; y++)
                for (int xx = 0; xx < 3; xx++) x[i * 64 + (top + y) * 8 + left + xx] += 2f;
        }
        return new ClassImages(Tensor.FromArray(x, n, 1, 8, 8), labels, 3);
    }

    private static Tensor[][] FixedNets(int count, bool requiresGrad)
    {
        var nets = Enumerable.Range(0, count).Select(k => DistillConvNet.Init(Spec, new Generator(1000 + (ulong)k))).ToArray();
        foreach (var p in nets.SelectMany(n => n)) p.RequiresGrad = requiresGrad;
        return nets;
    }

    private static double Measure(Func<Tensor[], int, Tensor> classObjective, Tensor[][] nets)
    {
        double total = 0;
        using (Tensor.NoGrad())
            foreach (var net in nets)
                for (int c = 0; c < 3; c++)
                    using (Tensor.NewDisposeScope())
                        total += classObjective(net, c).ToDouble();
        return total / nets.Length;
    }

    [Fact]
    public void DistributionMatching_ObjectiveDecreases()
    {
        using var real = TinyData(20, 1);
        using var syn = SyntheticSet.FromNoise(3, 2, [1, 8, 8], new Generator(2));
        var nets = FixedNets(4, requiresGrad: false);
        Tensor Objective(Tensor[] net, int c) => DistributionMatching.ClassObjective(Spec, net, real.Gather([.. real.IndicesOf(c)]), syn.ClassImages(c));
        double before = Measure(Objective, nets);
        using (var dm = new DistributionMatching(Spec, real, syn, new DistributionMatchingOptions(RealBatch: 16), seed: 3))
            for (int it = 0; it < 30; it++) Assert.True(double.IsFinite(dm.Step(it)));
        double after = Measure(Objective, nets);
        Assert.True(after < 0.5 * before, $"DM objective {before:G4} → {after:G4}");
        foreach (var p in nets.SelectMany(n => n)) p.Dispose();
    }

    [Fact]
    public void GradientMatching_ObjectiveDecreases()
    {
        using var real = TinyData(16, 4);
        using var syn = SyntheticSet.FromNoise(3, 2, [1, 8, 8], new Generator(5));
        var nets = FixedNets(4, requiresGrad: true);
        Tensor Objective(Tensor[] net, int c)
        {
            var idx = real.IndicesOf(c).ToArray();
            return GradientMatching.ClassObjective(Spec, net, real.Gather(idx), Tensor.Full([idx.Length], c, DType.Int64), syn.ClassImages(c), syn.ClassLabels(c));
        }
        double before = Measure(Objective, nets);
        using (var dc = new GradientMatching(Spec, real, syn, new GradientMatchingOptions(RealBatch: 16, ImageLearningRate: 0.5, OuterLoop: 2, InnerLoop: 2), seed: 6))
            for (int it = 0; it < 20; it++) Assert.True(double.IsFinite(dc.Step(it)));
        double after = Measure(Objective, nets);
        Assert.True(after < 0.8 * before, $"DC objective {before:G4} → {after:G4}");
        foreach (var p in nets.SelectMany(n => n)) p.Dispose();
    }

    [Fact]
    public void TrajectoryMatching_ObjectiveDecreases_AndLearnsItsLearningRate()
    {
        using var real = TinyData(16, 7);
        using var syn = SyntheticSet.FromNoise(3, 2, [1, 8, 8], new Generator(8), learningRate: 0.05);
        using var expert = ExpertTrajectory.Train(Spec, real, epochs: 2, learningRate: 0.05, batchSize: 8, seed: 9);
        Assert.Equal(2, expert.Epochs);
        double Objective()
        {
            using (Tensor.NoGrad())
            using (var l = TrajectoryMatching.Objective(Spec, expert.Checkpoints[0], expert.Checkpoints[1], syn.Images, syn.Labels, syn.LearningRate, 5))
                return l.ToDouble();
        }
        double before = Objective();
        double lr0 = syn.LearningRate.ToDouble();
        var options = new TrajectoryMatchingOptions(SyntheticSteps: 5, ExpertEpochs: 1, MaxStartEpoch: 0, ImageLearningRate: 10, LearningRateLearningRate: 1e-3);
        using (var mtt = new TrajectoryMatching(Spec, real, syn, [expert], options, seed: 10))
            for (int it = 0; it < 15; it++) Assert.True(double.IsFinite(mtt.Step(it)));
        double after = Objective();
        Assert.True(after < 0.9 * before, $"MTT objective {before:G4} → {after:G4}");
        Assert.NotEqual(lr0, syn.LearningRate.ToDouble());
    }

    [Fact]
    public void SyntheticSet_FromRealTakesImagesOfEachClass_AndSaveLoadRoundTrips()
    {
        using var real = TinyData(5, 11);
        using var syn = SyntheticSet.FromReal(real, 2, new Random(1), learningRate: 0.02);
        Assert.Equal(6, syn.Count);
        Assert.Equal(new long[] { 0, 0, 1, 1, 2, 2 }, syn.Labels.ToArray<long>());
        var all = real.Images.ToArray<float>();
        var s = syn.Images.ToArray<float>();
        for (int i = 0; i < 6; i++)
        {
            // Each synthetic image is a copy of a real image of its class.
            var img = s.AsSpan(i * 64, 64).ToArray();
            bool found = real.IndicesOf(i / 2).Any(j => all.AsSpan((int)j * 64, 64).SequenceEqual(img));
            Assert.True(found, $"synthetic image {i} is not a real image of class {i / 2}");
        }
        string path = Path.Combine(Path.GetTempPath(), $"syn-{Guid.NewGuid():N}.safetensors");
        try
        {
            syn.Save(path, new Dictionary<string, string> { ["method"] = "test" });
            using var back = SyntheticSet.Load(path);
            Assert.Equal(syn.Images.ToArray<float>(), back.Images.ToArray<float>());
            Assert.Equal(2, back.ImagesPerClass);
            Assert.Equal(0.02, back.LearningRate.ToDouble(), 1e-7);
            SafeTensors.Load(path, out var meta).Values.ToList().ForEach(t => t.Dispose());
            Assert.Equal("test", meta["method"]);
            Assert.Equal("2", meta["ipc"]);
        }
        finally
        {
            File.Delete(path);
        }
        Assert.Throws<ArgumentException>(() => SyntheticSet.FromReal(real, 6, new Random(1)));
    }

    [Fact]
    public void Evaluation_TrainsOnTheSetAndBeatsChance()
    {
        using var real = TinyData(10, 12);
        using var test = TinyData(10, 13);
        var (images, labels) = SetEvaluation.RandomRealSubset(real, 3, new Random(2));
        using (images)
        using (labels)
        {
            Assert.Equal(new long[] { 0, 0, 0, 1, 1, 1, 2, 2, 2 }, labels.ToArray<long>());
            double acc = SetEvaluation.TrainAndTest(Spec, images, labels, test.Images, test.Labels, new EvaluationOptions(Epochs: 60, LearningRate: 0.05), seed: 1);
            Assert.True(acc > 0.6, $"accuracy {acc}");
            // Mini-batches smaller than the set, the last one of a single image (9 = 4 + 4 + 1).
            double accBatched = SetEvaluation.TrainAndTest(Spec, images, labels, test.Images, test.Labels, new EvaluationOptions(Epochs: 30, BatchSize: 4, LearningRate: 0.05), seed: 1);
            Assert.True(accBatched > 0.6, $"accuracy with batches of 4: {accBatched}");
        }
    }
}
