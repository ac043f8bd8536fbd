using Xunit.Abstractions;
using Engine.Distillation;
using Engine.Distillation.Methods;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;
using Engine.Tests.Cli;

namespace Engine.Tests.Distillation.Methods;

/// <summary>
/// The logit methods built on the fused losses (dkd, dist, taid, multi-teacher, pld, bdkd): each method's loss is
/// its documented composition of the loss functions (compared with direct calls, and for BD-KD with a float64
/// transcription), and a 2-epoch training on the tiny synthetic data lowers the loss.
/// </summary>
public class LogitLossMethodTests(ITestOutputHelper output)
{
    private static (Tensor X, Tensor Y) Batch(int n, int seed)
    {
        var g = new Generator((ulong)seed);
        var x = Tensor.Randn([n, 1, 28, 28], generator: g);
        var y = Tensor.FromArray(Enumerable.Range(0, n).Select(i => (long)((i * 3) % 10)).ToArray(), n);
        return (x, y);
    }

    private static DistillationBatch Of(Tensor x, Tensor y, int epoch = 0, long globalStep = 0)
        => new(x, y, Enumerable.Range(0, (int)y.Size(0)).Select(i => (long)i).ToArray(), epoch, 0, globalStep);

    private static Tensor TeacherLogits(Module teacher, Tensor x)
    {
        teacher.Eval();
        using (Tensor.NoGrad()) return teacher.Forward(x);
    }

    private static double Ce(Tensor logits, Tensor y) => Functional.CrossEntropy(logits, y).ToDouble();

    private static double[][] Rows(Tensor t)
    {
        var v = t.To(DType.Float64).Contiguous().ToArray<double>();
        int c = (int)t.Size(-1);
        return Enumerable.Range(0, v.Length / c).Select(r => v.AsSpan(r * c, c).ToArray()).ToArray();
    }

    private static double[] Softmax(double[] z, double temperature)
    {
        double m = z.Max(), s = 0;
        var e = z.Select(v => Math.Exp((v - m) / temperature)).ToArray();
        foreach (var v in e) s += v;
        return e.Select(v => v / s).ToArray();
    }

    private static double Kl(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) if (a[i] > 0) s += a[i] * (Math.Log(a[i]) - Math.Log(b[i]));
        return s;
    }

    private static double Entropy(double[] p) => -p.Where(v => v > 0).Sum(v => v * Math.Log(v));

    [Fact]
    public void DkdIsCrossEntropyPlusTheWarmedUpDkdTerm()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (DkdMethod)MethodRegistry.Create("dkd", MethodTests.Context(student, teacher));
        Assert.Equal((1.0, 8.0, 4.0, 1.0), (method.Alpha, method.Beta, method.Temperature, method.CeWeight));
        var (x, y) = Batch(8, 3);
        using var _x = x; using var _y = y;
        using var scope = Tensor.NewDisposeScope();
        var t = TeacherLogits(teacher, x);

        // No plan: mdistiller's rule, 1-based epoch over 20 warm-up epochs (epoch 4 → w = 5/20).
        var (loss, s) = method.Loss(Of(x, y, epoch: 4), 0);
        Assert.Equal((5.0, 20.0), method.Warmup(Of(x, y, epoch: 4)));
        double dkdFull = LogitLoss.Dkd(s, t, y, 1, 8, 4, warmupEpochs: 0).ToDouble();
        Assert.Equal(Ce(s, y) + 0.25 * dkdFull, loss.ToDouble(), 1e-5);
        Assert.Equal(LogitLoss.DkdWithCrossEntropy(s, t, y, 5, 1, 1, 8, 4, 20).ToDouble(), loss.ToDouble(), 1e-6);

        // With a plan the warm-up is 1/12 of the run: 24 epochs × 10 steps → W = 2 epochs; global step 4 → e = 0.5, w = 0.25.
        method.BeginTraining(new TrainingPlan(80, 10, 24, 10));
        Assert.Equal((0.5, 2.0), method.Warmup(Of(x, y, globalStep: 4)));
        (loss, s) = method.Loss(Of(x, y, globalStep: 4), 0);
        Assert.Equal(Ce(s, y) + 0.25 * dkdFull, loss.ToDouble(), 1e-5);
        (loss, s) = method.Loss(Of(x, y, globalStep: 100), 0);   // past the warm-up: w = 1
        Assert.Equal(Ce(s, y) + dkdFull, loss.ToDouble(), 1e-5);
        // Cached teacher logits give the same loss.
        Assert.Equal(loss.ToDouble(), method.Loss(Of(x, y, globalStep: 100) with { TeacherLogits = [t] }, 0).Value.ToDouble(), 1e-6);
    }

    [Fact]
    public void MethodSpecs_CarryOptions_AndBadSpecsThrowNamingTheSpec()
    {
        var (name, o) = MethodOptions.ParseSpec("dkd:beta=1:alpha=0.5");
        Assert.Equal("dkd", name);
        Assert.Equal((0.5, 1.0), (o.Alpha, o.Beta));
        Assert.Null(o.Temperature);
        Assert.Equal(("kd", new MethodOptions { Temperature = 2, Alpha = 0.25 }), MethodOptions.ParseSpec("KD: temperature=2 : alpha=0.25"));
        Assert.Equal(new MethodOptions(), MethodOptions.ParseSpec("scratch").Options);
        Assert.Equal(3, MethodOptions.ParseSpec("dml:peers=3").Options.Peers);

        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using (var dkd = (DkdMethod)MethodRegistry.Create("dkd", MethodTests.Context(student, teacher) with { Options = o }))
            Assert.Equal((0.5, 1.0, 4.0), (dkd.Alpha, dkd.Beta, dkd.Temperature));
        using (var dist = (DistMethod)MethodRegistry.Create("dist", MethodTests.Context(student, teacher) with { Options = new MethodOptions { Beta = 2 } }))
            Assert.Equal(2.0, dist.Beta);

        foreach (var (bad, says) in new[]
        {
            ("nope:beta=1", "unknown method 'nope'"), ("dkd:beta", "is not key=value"), ("dkd:beta=1:beta=2", "given twice"),
            ("dkd:beta=x", "not a finite number"), ("dkd:beta=NaN", "not a finite number"), ("dkd:gamma=1", "unknown option 'gamma'"),
            ("dml:peers=1.5", "whole number"),
        })
        {
            var e = Assert.Throws<ArgumentException>(() => MethodOptions.ParseSpec(bad));
            Assert.Contains(bad, e.Message);
            Assert.Contains(says, e.Message);
        }
    }

    [Fact]
    public void DistIsCrossEntropyPlusDist()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(4));
        using var method = (DistMethod)MethodRegistry.Create("dist", MethodTests.Context(student, teacher));
        Assert.Equal((1.0, 1.0, 1.0, 1.0), (method.Beta, method.Gamma, method.Temperature, method.CeWeight));
        var (x, y) = Batch(8, 5);
        using var _x = x; using var _y = y;
        using var scope = Tensor.NewDisposeScope();
        var t = TeacherLogits(teacher, x);
        var (loss, s) = method.Loss(Of(x, y), 0);
        Assert.Equal(Ce(s, y) + LogitLoss.Dist(s, t).ToDouble(), loss.ToDouble(), 1e-6);
    }

    [Fact]
    public void TaidUsesTheScheduleAndAdvancesItEveryStep()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(6));
        using var method = (TaidMethod)MethodRegistry.Create("taid", MethodTests.Context(student, teacher));
        teacher.Eval();
        var (x, y) = Batch(8, 7);
        using var _x = x; using var _y = y;
        using var scope = Tensor.NewDisposeScope();
        Assert.Contains("taid: call BeginTraining first", Assert.Throws<InvalidOperationException>(() => method.Loss(Of(x, y), 0)).Message);

        method.BeginTraining(new TrainingPlan(8, 10, 2, 5));
        var reference = new TaidSchedule(10);
        Assert.Equal(10, method.Schedule!.TotalSteps);
        double[] scale = [1.0, 0.5, 0.25, 0.9];
        for (int step = 0; step < scale.Length; step++)
        {
            double u = method.Schedule.Value;
            Assert.Equal(reference.Value, u, 1e-15);
            using var xs = x.Mul(scale[step]);    // a different batch each step, so the loss changes
            var (loss, s) = method.Loss(Of(xs, y, globalStep: step), 0);
            using var direct = LogitLoss.Taid(s, TeacherLogits(teacher, xs), u);
            Assert.Equal(direct.ToDouble(), loss.ToDouble(), 1e-6);
            reference.Update(loss.ToDouble(), step);
            Assert.Equal(loss.ToDouble(), method.Schedule.PreviousLoss, 1e-12);
        }
        Assert.True(method.Schedule.Value > 0.4, $"u = {method.Schedule.Value} after 4 of 10 steps");
        Assert.Equal(reference.Value, method.Schedule.Value, 1e-15);
        // A new run starts a new schedule.
        method.BeginTraining(new TrainingPlan(8, 10, 1, 5));
        Assert.Equal(0.4, method.Schedule.Value);
        Assert.Equal(5, method.Schedule.TotalSteps);
    }

    [Fact]
    public void MultiTeacherIsKlToTheMeanOfTheTeachersProbabilitiesAndNeedsTwoTeachers()
    {
        using var t1 = FashionMnistModels.Teacher(new Generator(1));
        using var t2 = FashionMnistModels.Teacher(new Generator(11));
        using var student = FashionMnistModels.Student(new Generator(8));
        var context = MethodTests.Context(student, t1) with { AdditionalTeachers = [t2] };
        using var method = (MultiTeacherMethod)MethodRegistry.Create("multi-teacher", context);
        Assert.Equal(2, method.Teachers.Count);
        Assert.Same(t1, method.Teachers[0]);
        Assert.Same(t2, method.Teachers[1]);
        var (x, y) = Batch(6, 9);
        using var _x = x; using var _y = y;
        using var scope = Tensor.NewDisposeScope();
        var l1 = TeacherLogits(t1, x);
        var l2 = TeacherLogits(t2, x);
        var (loss, s) = method.Loss(Of(x, y), 0);
        Assert.Equal(LogitLoss.MultiTeacher(s, [l1, l2]).ToDouble(), loss.ToDouble(), 1e-6);
        // float64 by hand: (1/B) Σ_rows KL(mean_k softmax(t_k) ‖ softmax(s)); the labels play no part.
        var (sr, ar, br) = (Rows(s), Rows(l1), Rows(l2));
        double expected = 0;
        for (int r = 0; r < sr.Length; r++)
        {
            var pa = Softmax(ar[r], 1); var pb = Softmax(br[r], 1);
            expected += Kl(pa.Zip(pb, (a, b) => 0.5 * (a + b)).ToArray(), Softmax(sr[r], 1));
        }
        Assert.Equal(expected / sr.Length, loss.ToDouble(), 1e-5);
        using var otherLabels = Tensor.FromArray(y.ToArray<long>().Select(v => (v + 1) % 10).ToArray(), y.Size(0));
        Assert.Equal(loss.ToDouble(), method.Loss(Of(x, otherLabels), 0).Value.ToDouble(), 1e-6);

        // One teacher, or the same checkpoint twice, is refused with a message saying why.
        var one = Assert.Throws<ArgumentException>(() => MethodRegistry.Create("multi-teacher", MethodTests.Context(student, t1)));
        Assert.Contains("multi-teacher: needs at least 2 teachers", one.Message);
        var twice = Assert.Throws<ArgumentException>(() => MethodRegistry.Create("multi-teacher", MethodTests.Context(student, t1) with { AdditionalTeachers = [t1] }));
        Assert.Contains("the same teacher was given twice", twice.Message);
    }

    [Fact]
    public void PldIsCrossEntropyPlusThePlackettLuceLoss()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(10));
        using var method = (PldMethod)MethodRegistry.Create("pld", MethodTests.Context(student, teacher));
        var (x, y) = Batch(8, 11);
        using var _x = x; using var _y = y;
        using var scope = Tensor.NewDisposeScope();
        var t = TeacherLogits(teacher, x);
        var (loss, s) = method.Loss(Of(x, y), 0);
        Assert.Equal(Ce(s, y) + LogitLoss.PlackettLuce(s, t, y).ToDouble(), loss.ToDouble(), 1e-6);
    }

    [Fact]
    public void BdKdMixesForwardAndReverseKlByTheEntropies()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(12));
        using var method = (BdKdMethod)MethodRegistry.Create("bdkd", MethodTests.Context(student, teacher));
        Assert.Equal((4.0, 0.9), (method.Temperature, method.Alpha));
        var (x, y) = Batch(8, 13);
        using var _x = x; using var _y = y;
        using var scope = Tensor.NewDisposeScope();
        var t = TeacherLogits(teacher, x);
        var (loss, s) = method.Loss(Of(x, y), 0);

        // float64 transcription of the documented rule.
        var (sr, tr) = (Rows(s), Rows(t));
        double kd = 0;
        var w = new double[sr.Length];
        for (int r = 0; r < sr.Length; r++)
        {
            var q = Softmax(sr[r], 4); var p = Softmax(tr[r], 4);
            w[r] = Entropy(p) / (Entropy(p) + Entropy(q));
            kd += 16 * (w[r] * Kl(p, q) + (1 - w[r]) * Kl(q, p));
        }
        Assert.Equal(0.1 * Ce(s, y) + 0.9 * kd / sr.Length, loss.ToDouble(), 1e-5);
        TestUtil.AssertClose(w, BdKdMethod.Weights(s, t, 4), atol: 1e-9);
        // The same through the divergence API.
        using var wt = Tensor.FromArray(w.Select(v => (float)v).ToArray(), w.Length);
        double viaApi = Divergences.BdKd(s, t, wt, new DivergenceOptions { Temperature = 4, ScaleByTemperatureSquared = true }).ToDouble();
        Assert.Equal(0.1 * Ce(s, y) + 0.9 * viaApi, loss.ToDouble(), 1e-5);

        // The direction of the rule: a student sharper than the teacher leans on forward KL (w > ½), a flatter one on reverse KL.
        using var flat = Tensor.FromArray(new float[] { 0, 0, 0, 1 }, 1, 4);
        using var sharp = Tensor.FromArray(new float[] { 0, 0, 0, 20 }, 1, 4);
        Assert.True(BdKdMethod.Weights(sharp, flat, 1)[0] > 0.5);
        Assert.True(BdKdMethod.Weights(flat, sharp, 1)[0] < 0.5);
        Assert.Equal(0.5, BdKdMethod.Weights(flat, flat, 1)[0], 1e-12);
    }

    private static Module TrainedTeacher(int seed, Engine.Data.ImageDataset train, Engine.Data.ImageDataset test)
    {
        var teacher = FashionMnistModels.Teacher(new Generator((ulong)seed));
        using var ce = new CrossEntropyMethod(teacher);
        MethodTrainer.Train(ce, new MethodTrainSettings { Epochs = 3, BatchSize = 16, LearningRate = 0.05, Seed = (ulong)seed }, train, test);
        return teacher;
    }

    [Theory]
    [InlineData("dkd")]
    [InlineData("dist")]
    [InlineData("taid")]
    [InlineData("multi-teacher")]
    [InlineData("pld")]
    [InlineData("bdkd")]
    public void TwoEpochsOnTheTinyDataLowerTheLoss(string name)
    {
        var train = TrainerAndRobustnessTests.Tiny(64, 31);
        var test = TrainerAndRobustnessTests.Tiny(20, 32);
        // Trained teachers (3 epochs from the labels): a random teacher's near-uniform outputs leave TAID's loss at ~log 10 throughout.
        using var teacher = TrainedTeacher(33, train, test);
        using var second = TrainedTeacher(34, train, test);
        using var student = FashionMnistModels.Student(new Generator(35));
        var context = MethodTests.Context(student, teacher) with { AdditionalTeachers = name == "multi-teacher" ? [second] : [] };
        using var method = MethodRegistry.Create(name, context);
        var r = MethodTrainer.Train(method, new MethodTrainSettings { Epochs = 2, BatchSize = 16, LearningRate = 0.01, Seed = 2 }, train, test);
        Assert.Equal(2, r.Epochs.Count);
        output.WriteLine($"{name}: loss {r.Epochs[0].TrainLoss:F4} -> {r.Epochs[1].TrainLoss:F4}, test acc {r.TestAccuracy * 100:F1}%");
        Assert.All(r.Epochs, e => Assert.True(double.IsFinite(e.TrainLoss), name));
        Assert.True(r.Epochs[1].TrainLoss < r.Epochs[0].TrainLoss, $"{name}: loss {r.Epochs[0].TrainLoss} -> {r.Epochs[1].TrainLoss}");
        if (method is TaidMethod taid) Assert.True(taid.Schedule!.Value > 0.4, $"taid: u = {taid.Schedule.Value}");
    }
}

/// <summary><c>engine distill --method NAME</c> for the logit methods on the tiny synthetic data set.</summary>
public class LogitLossMethodCliTests(CliFixture fx) : IClassFixture<CliFixture>
{
    [Theory]
    [InlineData("dkd")]
    [InlineData("dist")]
    [InlineData("taid")]
    [InlineData("pld")]
    [InlineData("bdkd")]
    public void DistillRunsTheMethod(string method)
    {
        string ckpt = fx.NewPath(method + ".safetensors");
        var (rc, output, err) = fx.Run("distill", "--method", method, "--teacher", fx.TeacherPath, "--epochs", "2", "--batch-size", "16",
            "--limit", "48", "--test-limit", "20", "--out", ckpt);
        Assert.True(rc == 0, err);
        Assert.Contains($"{method} student epoch 2/2", output);
        Assert.Contains($"{method} student: test accuracy", output);
        Assert.True(File.Exists(ckpt));
    }

    [Fact]
    public void MultiTeacherFromTheCliExplainsThatItNeedsTwoCheckpoints()
    {
        var (rc, _, err) = fx.Run("distill", "--method", "multi-teacher", "--teacher", fx.TeacherPath, "--epochs", "1", "--limit", "16", "--test-limit", "10");
        Assert.Equal(1, rc);
        Assert.Contains("multi-teacher: needs at least 2 teachers", err);
        (rc, _, err) = fx.Run("distill", "--method", "dkd", "--epochs", "1");
        Assert.Equal(1, rc);
        Assert.Contains("--method dkd needs --teacher CKPT", err);
    }
}
