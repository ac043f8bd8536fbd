using System.Xml.Linq;
using Engine.Data;
using Engine.Distillation.Experiments;
using Engine.Distillation.Methods;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;

namespace Engine.Tests.Distillation.Methods;

/// <summary>MethodTrainer on a tiny in-memory data set, FGSM/PGD, and the report writers (Markdown, SVG).</summary>
public class TrainerAndRobustnessTests
{
    // The CliFixture pattern in memory: class c is a bright block at one of 10 positions plus noise.
    internal static ImageDataset Tiny(int count, int seed)
    {
        var rng = new Random(seed);
        var pixels = new byte[count * 784];
        var labels = new byte[count];
        for (int i = 0; i < count; i++)
        {
            int c = i % 10;
            labels[i] = (byte)c;
            for (int p = 0; p < 784; p++) pixels[i * 784 + p] = (byte)rng.Next(0, 60);
            int r0 = 2 + (c / 5) * 13 + rng.Next(0, 3), c0 = 1 + (c % 5) * 5 + rng.Next(0, 2);
            for (int r = r0; r < r0 + 6; r++)
                for (int q = c0; q < c0 + 4; q++) pixels[i * 784 + r * 28 + q] = (byte)rng.Next(200, 256);
        }
        return new ImageDataset("tiny", pixels, labels, 1, 28, 28, FashionMnist.ClassNames);
    }

    /// <summary>KD that refuses the trainer's logit cache, so the teacher runs at every step.</summary>
    private sealed class UncachedKd(Module s, Module t) : KnowledgeDistillationMethod(s, t)
    {
        public override bool UsesTeacherLogitsOnly => false;
    }

    [Fact]
    public void CachedTeacherLogitsTrainExactlyLikeTheTeacherForward()
    {
        var train = Tiny(40, 1);
        var test = Tiny(20, 2);
        using var teacher = FashionMnistModels.Teacher(new Generator(3));
        var settings = new MethodTrainSettings { Epochs = 2, BatchSize = 16, Seed = 4 };
        using var s1 = FashionMnistModels.Student(new Generator(5));
        using var s2 = FashionMnistModels.Student(new Generator(5));
        MethodRunResult a, b;
        using (var m = new KnowledgeDistillationMethod(s1, teacher)) a = MethodTrainer.Train(m, settings, train, test);
        using (var m = new UncachedKd(s2, teacher)) b = MethodTrainer.Train(m, settings, train, test);
        for (int e = 0; e < 2; e++)
        {
            Assert.Equal(a.Epochs[e].TrainLoss, b.Epochs[e].TrainLoss, 1e-5);
            Assert.Equal(a.Epochs[e].TestAccuracy, b.Epochs[e].TestAccuracy);
        }
    }

    // lr 0.005: at 0.01 and above, AT's 1000-weighted normalized-attention term kills this BN-free student's
    // ReLU maps early on (an all-zero map has attention 0 and no gradient), so its loss rises (see Methods/README.md).
    [Fact]
    public void TrainerRunsEveryRegisteredMethodAndTheLossFalls()
    {
        var train = Tiny(64, 6);
        var test = Tiny(20, 7);
        using var teacher = FashionMnistModels.Teacher(new Generator(8));
        using var previous = FashionMnistModels.Student(new Generator(9));
        using var secondTeacher = FashionMnistModels.Teacher(new Generator(14)); // multi-teacher needs two
        var lines = new StringWriter();
        var observer = new TextTrainingObserver(lines);
        foreach (var info in MethodRegistry.All)
        {
            using var student = FashionMnistModels.Student(new Generator(10));
            var t = info.Teacher switch { TeacherRequirement.Required => (Module)teacher, TeacherRequirement.SameArchitecture => previous, _ => null };
            // defensive at its default T = 20 moves the loss by < 1e-7 in 12 steps at this rate (both softmaxes near
            // uniform, the gradient scaled by 1/T); T = 2 here, its T = 20 loss is tested in MethodTests.
            var options = info.Name == "defensive" ? new MethodOptions { Temperature = 2 } : null;
            var context = MethodTests.Context(student, t, options) with { AdditionalTeachers = info.Name == "multi-teacher" ? [secondTeacher] : [] };
            using var method = MethodRegistry.Create(info.Name, context);
            var r = MethodTrainer.Train(method, new MethodTrainSettings { Epochs = 3, BatchSize = 16, LearningRate = 0.005, Seed = 1 }, train, test, observer);
            Assert.Equal(3, r.Epochs.Count);
            Assert.All(r.Epochs, e => Assert.True(double.IsFinite(e.TrainLoss) && e.Seconds > 0, info.Name));
            // taid's target moves towards this untrained teacher's near-uniform outputs, so its loss stays at ~log 10
            // (2.3023 -> 2.3042 here); LogitLossMethodTests checks that it falls with trained teachers.
            if (info.Name != "taid")
                Assert.True(r.Epochs[2].TrainLoss < r.Epochs[0].TrainLoss, $"{info.Name}: loss {r.Epochs[0].TrainLoss} -> {r.Epochs[2].TrainLoss}");
            Assert.False(student.Training);
        }
        Assert.Contains("fitnets epoch 3/3: loss", lines.ToString());
    }

    [Fact]
    public void PskdStoresPredictionsPerSampleAcrossEpochs()
    {
        var train = Tiny(30, 11);
        using var student = FashionMnistModels.Student(new Generator(12));
        using var method = new ProgressiveSelfKDMethod(student);
        MethodTrainer.Train(method, new MethodTrainSettings { Epochs = 2, BatchSize = 8 }, train, Tiny(10, 13));
        for (int i = 0; i < 30; i++)
        {
            var p = method.StoredPrediction(i).ToArray();
            Assert.False(float.IsNaN(p[0]), $"sample {i} never stored");
            Assert.Equal(1.0, p.Sum(v => (double)v), 1e-5);
        }
    }

    [Fact]
    public void BornAgainTrainsGenerationsFromTheLastOne()
    {
        var train = Tiny(40, 14);
        var test = Tiny(20, 15);
        var gens = BornAgain.Train(k => FashionMnistModels.Student(new Generator(20 + (ulong)k)), null, 2, new MethodTrainSettings { Epochs = 2, BatchSize = 16 }, train, test);
        try
        {
            Assert.Equal([0, 1, 2], gens.Select(g => g.Generation));
            Assert.All(gens, g => Assert.NotNull(g.Result));
            Assert.Equal(3, gens.Select(g => g.Model).Distinct().Count());
        }
        finally
        {
            foreach (var g in gens) g.Model.Dispose();
        }
    }

    [Fact]
    public void FgsmAndPgdStayInTheBallAndRaiseTheLoss()
    {
        var train = Tiny(80, 16);
        using var model = FashionMnistModels.Student(new Generator(17));
        using (var m = new CrossEntropyMethod(model)) MethodTrainer.Train(m, new MethodTrainSettings { Epochs = 3, BatchSize = 16 }, train, Tiny(10, 18));
        model.Eval();
        var loader = new DataLoader(Tiny(24, 19), 24, shuffle: false);
        var batch = loader.First();
        using var _b = batch;
        const double mean = FashionMnist.Mean, std = FashionMnist.Std, eps = 0.05;
        using var scope = Tensor.NewDisposeScope();
        double Loss(Tensor x) { using (Tensor.NoGrad()) return Functional.CrossEntropy(model.Forward((x - mean) / std), batch.Labels).ToDouble(); }
        var x0 = batch.Images;
        // ε = 0 changes nothing.
        TestUtil.AssertClose(x0.To(DType.Float64).ToArray<double>(), Robustness.Fgsm(model, x0, batch.Labels, 0, mean, std), atol: 0, rtol: 0);
        var xf = Robustness.Fgsm(model, x0, batch.Labels, eps, mean, std);
        var xp = Robustness.Pgd(model, x0, batch.Labels, eps, 5, eps / 4, mean, std, generator: new Generator(1));
        foreach (var x in new[] { xf, xp })
        {
            var d = (x - x0).Abs().Max().ToDouble();
            Assert.True(d <= eps + 1e-6, $"perturbation {d} > ε");
            Assert.True(x.Min().ToDouble() >= 0 && x.Max().ToDouble() <= 1);
        }
        double l0 = Loss(x0), lf = Loss(xf), lp = Loss(xp);
        Assert.True(lf > l0, $"FGSM did not raise the loss: {l0} -> {lf}");
        Assert.True(lp > l0, $"PGD did not raise the loss: {l0} -> {lp}");
        // The input gradient is autograd's gradient of the normalized input: exact against central differences on a
        // smooth float64 model (a linear classifier), and within 1% on the float64 CNN (ReLU and max-pool kinks).
        using (var linear = new Sequential(new Flatten(), new Linear(784, 10, generator: new Generator(3))))
        using (var m64 = FashionMnistModels.Student(new Generator(17)))
        {
            m64.LoadStateDict(model.StateDict());
            foreach (var (net, tol) in new (Module, double)[] { (linear.To(DType.Float64), 1e-6), (m64.To(DType.Float64), 1e-2) })
            {
                net.Eval();
                var x64 = x0.To(DType.Float64);
                double Loss64(Tensor x) { using (Tensor.NoGrad()) return Functional.CrossEntropy(net.Forward((x - mean) / std), batch.Labels).ToDouble(); }
                var g = Robustness.InputGradient(net, x64, batch.Labels, mean, std).ToArray<double>();
                var dir = Tensor.Randn(x0.ShapeArray(), DType.Float64, new Generator(2));
                double h = 1e-6, numeric = (Loss64(x64 + dir * h) - Loss64(x64 - dir * h)) / (2 * h);
                double analytic = g.Zip(dir.ToArray<double>(), (a, b) => a * b).Sum();
                Assert.Equal(analytic, numeric, Math.Max(1e-9, Math.Abs(analytic) * tol));
            }
        }

        var r = Robustness.Evaluate(model, Tiny(30, 20), eps, 3, eps / 4, mean, std);
        Assert.Equal(30, r.Images);
        Assert.True(r.Fgsm <= r.Clean && r.Pgd <= r.Clean, $"{r}");
    }

    [Fact]
    public void ChartsAreWellFormedSvgAndTheTableIsMarkdown()
    {
        var bars = SvgChart.Bars("a <title> & more", "acc (%)", [new("scratch", 81.2, 0.4), new("kd", 83.5, 0.3), new("nan", double.NaN, 0)]);
        var doc = XDocument.Parse(bars);
        XNamespace svg = "http://www.w3.org/2000/svg";
        Assert.Equal(svg + "svg", doc.Root!.Name);
        Assert.Equal(2, doc.Descendants(svg + "rect").Count(e => e.Attribute("fill")?.Value.StartsWith('#') == true));
        Assert.Contains(doc.Descendants(svg + "text"), t => t.Value == "a <title> & more");
        var lines = SvgChart.Lines("curves", "epoch", "acc", [new("kd", [(1, 70), (2, 80), (3, 85)]), new("scratch", [(1, 60), (2, 75), (3, 82)])]);
        doc = XDocument.Parse(lines);
        Assert.Equal(2, doc.Descendants(svg + "polyline").Count());

        var report = new ExperimentReport("x", "T");
        report.Columns.AddRange(["method", "acc"]);
        report.Rows.Add(["a|b", ExperimentReport.MeanStd([0.8, 0.82, 0.84])]);
        Assert.Equal("| method | acc |\n|---|---:|\n| a\\|b | 82.00 ± 2.00 |\n", report.MarkdownTable());
        report.Charts.Add(("c.svg", bars));
        string dir = Path.Combine(Path.GetTempPath(), "engine-report-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            string md = report.WriteTo(dir);
            Assert.Contains("![c](c.svg)", File.ReadAllText(md));
            XDocument.Load(Path.Combine(dir, "c.svg"));
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary>The per-sample teacher-feature cache of the feature methods changes nothing but the time.</summary>
public class TeacherFeatureCacheTests
{
    [Theory]
    [InlineData("fitnets")]
    [InlineData("at")]
    [InlineData("rkd")]
    public void CachedTeacherFeaturesTrainExactlyLikeTheTeacherForward(string name)
    {
        var train = TrainerAndRobustnessTests.Tiny(40, 31);
        var test = TrainerAndRobustnessTests.Tiny(20, 32);
        using var teacher = FashionMnistModels.Teacher(new Generator(33));
        var settings = new MethodTrainSettings { Epochs = 2, BatchSize = 16, LearningRate = 0.005, Seed = 4 };
        var results = new List<MethodRunResult>();
        foreach (long budget in new long[] { 1L << 30, 0 })
        {
            using var student = FashionMnistModels.Student(new Generator(5));
            using var method = (DistillationMethod)MethodRegistry.Create(name, MethodTests.Context(student, teacher));
            method.TeacherFeatureCacheBytes = budget;
            results.Add(MethodTrainer.Train(method, settings, train, test));
        }
        for (int e = 0; e < 2; e++)
        {
            Assert.Equal(results[1].Epochs[e].TrainLoss, results[0].Epochs[e].TrainLoss, 1e-6);
            Assert.Equal(results[1].Epochs[e].TestAccuracy, results[0].Epochs[e].TestAccuracy);
        }
    }
}
