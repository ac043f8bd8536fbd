using Engine.Distillation;
using Engine.Distillation.Methods;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;
using Engine.Tensors.Optim;

namespace Engine.Tests.Distillation.Methods;

/// <summary>
/// Each method's loss is the documented composition (checked against the pieces computed by hand), and a
/// few SGD steps on one fixed batch lower it (the smoke test). Tiny batches of random 28×28 images.
/// </summary>
public class MethodTests
{
    private static readonly long[] Sample = [1, 28, 28];

    private static (Tensor X, Tensor Y) Batch(int n, int seed)
    {
        var g = new Generator((ulong)seed);
        var x = Tensor.Randn([n, 1, 28, 28], generator: g);
        var y = Tensor.FromArray(Enumerable.Range(0, n).Select(i => (long)(i % 10)).ToArray(), n);
        return (x, y);
    }

    private static DistillationBatch Of(Tensor x, Tensor y, int epoch = 0)
        => new(x, y, Enumerable.Range(0, (int)y.Size(0)).Select(i => (long)i).ToArray(), epoch, 0, 0);

    /// <summary>Runs <paramref name="steps"/> SGD steps of every update on one batch; returns the update-0 loss before and after.</summary>
    private static (double First, double Last) Steps(IDistillationMethod method, DistillationBatch batch, int steps, double lr = 0.05)
    {
        method.Student.Train();
        foreach (var m in method.ExtraModules) m.Train();
        foreach (var t in method.Teachers) t.Eval();
        var optimizers = method.UpdateGroups.Select(g => new SGD(g, lr, momentum: 0.9)).ToList();
        double first = double.NaN, last = double.NaN;
        try
        {
            for (int s = 0; s <= steps; s++)
                for (int u = 0; u < optimizers.Count; u++)
                    using (Tensor.NewDisposeScope())
                    {
                        optimizers[u].ZeroGrad();
                        var (loss, _) = method.Loss(batch, u);
                        if (u == 0) { if (s == 0) first = loss.ToDouble(); last = loss.ToDouble(); }
                        if (s == steps) continue;
                        loss.Backward();
                        optimizers[u].Step();
                    }
        }
        finally
        {
            foreach (var o in optimizers) o.Dispose();
        }
        return (first, last);
    }

    [Fact]
    public void ForwardFeaturesGivesTheForwardOutputAndTheDocumentedShapes()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        teacher.Eval();
        var (x, _) = Batch(3, 1);
        using var _x = x;
        using var scope = Tensor.NewDisposeScope();
        using var tf = teacher.ForwardFeatures(x);
        using var sf = student.ForwardFeatures(x);
        TestUtil.AssertClose(teacher.Forward(x).To(DType.Float64).ToArray<double>(), tf.Output, atol: 0, rtol: 0);
        TestUtil.AssertClose(student.Forward(x).To(DType.Float64).ToArray<double>(), sf.Output, atol: 0, rtol: 0);
        Assert.Equal(["block1", "block2", "block3", "embedding"], teacher.FeatureNames);
        Assert.Equal(["block1", "block2", "embedding"], student.FeatureNames);
        Assert.Equal([3L, 32, 28, 28], tf["block1"].ShapeArray());
        Assert.Equal([3L, 64, 14, 14], tf["block2"].ShapeArray());
        Assert.Equal([3L, 128, 7, 7], tf["block3"].ShapeArray());
        Assert.Equal([3L, 256], tf["embedding"].ShapeArray());
        Assert.Equal([3L, 8, 14, 14], sf["block1"].ShapeArray());
        Assert.Equal([3L, 16, 7, 7], sf["block2"].ShapeArray());
        Assert.Equal([3L, 784], sf["embedding"].ShapeArray());
        // The student's embedding is what its last Linear sees: W·e + b is the output.
        var lin = (Linear)student.F[^1];
        TestUtil.AssertClose(lin.Forward(sf["embedding"]).To(DType.Float64).ToArray<double>(), sf.Output, atol: 1e-6);
        Assert.Contains("no feature 'nope'", Assert.Throws<KeyNotFoundException>(() => sf["nope"]).Message);
    }

    [Fact]
    public void KdLossIsLossesKnowledgeDistillationAndDecreases()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (KnowledgeDistillationMethod)MethodRegistry.Create("kd", Context(student, teacher));
        Assert.Equal(4, method.Temperature);
        Assert.Equal(0.9, method.Alpha);
        var (x, y) = Batch(8, 3);
        using var _x = x; using var _y = y;
        teacher.Eval();
        using (Tensor.NewDisposeScope())
        {
            var (loss, logits) = method.Loss(Of(x, y), 0);
            Tensor t;
            using (Tensor.NoGrad()) t = teacher.Forward(x);
            Assert.Equal(Losses.KnowledgeDistillation(logits, t, y, 4, 0.9).ToDouble(), loss.ToDouble(), 1e-6);
            // Cached teacher logits give the same loss.
            var cached = Of(x, y) with { TeacherLogits = [t] };
            Assert.Equal(loss.ToDouble(), method.Loss(cached, 0).Value.ToDouble(), 1e-6);
        }
        var (first, last) = Steps(method, Of(x, y), 10);
        Assert.True(last < first, $"kd loss {first} -> {last}");
    }

    [Fact]
    public void FitNetsLossIsCePlus100MseOfTheRegressedHintAndDecreases()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (FitNetsMethod)MethodRegistry.Create("fitnets", Context(student, teacher));
        Assert.Equal(8, method.Regressor.InChannels);
        Assert.Equal(64, method.Regressor.OutChannels);
        Assert.Single(method.ExtraModules);
        Assert.Equal(student.Parameters().Count() + 2, method.UpdateGroups[0].Count); // + regressor weight and bias
        var (x, y) = Batch(6, 4);
        using var _x = x; using var _y = y;
        teacher.Eval();
        using (Tensor.NewDisposeScope())
        {
            var (loss, logits) = method.Loss(Of(x, y), 0);
            var sf = student.ForwardFeatures(x);
            FeatureOutput tf;
            using (Tensor.NoGrad()) tf = teacher.ForwardFeatures(x);
            // reference: the regressor's output and the MSE in float64
            var r = method.Regressor.Forward(sf["block1"]).To(DType.Float64).ToArray<double>();
            var t = tf["block2"].To(DType.Float64).ToArray<double>();
            double mse = r.Zip(t, (a, b) => (a - b) * (a - b)).Average();
            double expected = Functional.CrossEntropy(logits, y).ToDouble() + 100 * mse;
            Assert.Equal(expected, loss.ToDouble(), 1e-4 * Math.Abs(expected));
        }
        var (first, last) = Steps(method, Of(x, y), 10, lr: 0.01);
        Assert.True(last < first, $"fitnets loss {first} -> {last}");
    }

    [Fact]
    public void FitNetsGradCheckOfTheHintWrtStudentFeatures()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = new FitNetsMethod(student, teacher, Sample, generator: new Generator(5));
        method.Regressor.To(DType.Float64);
        var rng = new Random(6);
        using var fs = TestUtil.Random(rng, [2, 8, 3, 3], DType.Float64).RequiresGrad_();
        using var ft = TestUtil.Random(rng, [2, 64, 3, 3], DType.Float64);
        GradCheck.Check(v => method.HintLoss(v[0], ft), [fs]);
    }

    [Fact]
    public void AttentionTransferLossIsCePlus1000SumOverStagesAndDecreases()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (AttentionTransferMethod)MethodRegistry.Create("at", Context(student, teacher));
        var (x, y) = Batch(6, 5);
        using var _x = x; using var _y = y;
        teacher.Eval();
        using (Tensor.NewDisposeScope())
        {
            var (loss, logits) = method.Loss(Of(x, y), 0);
            var sf = student.ForwardFeatures(x);
            FeatureOutput tf;
            using (Tensor.NoGrad()) tf = teacher.ForwardFeatures(x);
            double at = FeatureLosses.AttentionTransfer(sf["block1"], tf["block2"]).ToDouble() + FeatureLosses.AttentionTransfer(sf["block2"], tf["block3"]).ToDouble();
            double expected = Functional.CrossEntropy(logits, y).ToDouble() + 1000 * at;
            Assert.Equal(expected, loss.ToDouble(), 1e-5 * Math.Abs(expected));
        }
        // lr 0.01: at 0.05 with momentum, 10 steps on one random batch overshoot (the 1000-weighted term is stiff).
        var (first, last) = Steps(method, Of(x, y), 10, lr: 0.01);
        Assert.True(last < first, $"at loss {first} -> {last}");
        Assert.Contains("no feature 'block9'", Assert.Throws<ArgumentException>(() => new AttentionTransferMethod(student, teacher, [("block9", "block2")])).Message);
    }

    [Fact]
    public void RkdLossIsCePlusRkdOnTheEmbeddingsAndDecreases()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = MethodRegistry.Create("rkd", Context(student, teacher));
        var (x, y) = Batch(8, 6);
        using var _x = x; using var _y = y;
        teacher.Eval();
        using (Tensor.NewDisposeScope())
        {
            var (loss, logits) = method.Loss(Of(x, y), 0);
            var sf = student.ForwardFeatures(x);
            FeatureOutput tf;
            using (Tensor.NoGrad()) tf = teacher.ForwardFeatures(x);
            double expected = Functional.CrossEntropy(logits, y).ToDouble() + FeatureLosses.Rkd(sf["embedding"], tf["embedding"]).ToDouble();
            Assert.Equal(expected, loss.ToDouble(), 1e-5 * Math.Abs(expected));
        }
        var (first, last) = Steps(method, Of(x, y), 10);
        Assert.True(last < first, $"rkd loss {first} -> {last}");
    }

    [Fact]
    public void DmlPeerLossMatchesTheReferenceAndPeersAreUpdatedAlternately()
    {
        // Reference of CE + KL(p_other ‖ p_self) in float64.
        var rng = new Random(7);
        var z = TestUtil.RandomValues(rng, 12, -3, 3);
        var o = TestUtil.RandomValues(rng, 12, -3, 3);
        long[] labels = [0, 2, 1, 2];
        double expected = 0;
        for (int i = 0; i < 4; i++)
        {
            double Lse(double[] v) => Math.Log(Enumerable.Range(0, 3).Sum(j => Math.Exp(v[i * 3 + j])));
            double lz = Lse(z), lo = Lse(o);
            expected -= z[i * 3 + labels[i]] - lz;
            for (int j = 0; j < 3; j++)
            {
                double lp = o[i * 3 + j] - lo, lq = z[i * 3 + j] - lz;
                expected += Math.Exp(lp) * (lp - lq);
            }
        }
        using var tz = TestUtil.FromDoubles(z, [4, 3], DType.Float64).RequiresGrad_();
        using var to = TestUtil.FromDoubles(o, [4, 3], DType.Float64);
        using var ty = Tensor.FromArray(labels, 4);
        using (var loss = DeepMutualLearningMethod.PeerLoss(tz, [to], ty)) Assert.Equal(expected / 4, loss.ToDouble(), 1e-13);
        GradCheck.Check(v => DeepMutualLearningMethod.PeerLoss(v[0], [to], ty), [tz]);

        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (DeepMutualLearningMethod)MethodRegistry.Create("dml", Context(student, null));
        Assert.Equal(2, method.Peers.Count);
        Assert.Equal(2, method.UpdateGroups.Count);
        Assert.Same(student, method.Peers[0]);
        var (x, y) = Batch(8, 8);
        using var _x = x; using var _y = y;
        // Update 1 uses peer 0's predictions as they are now (after update 0 changed them).
        using (Tensor.NewDisposeScope())
        {
            using (Tensor.NoGrad()) foreach (var p in student.Parameters()) p.CopyFrom_(p * 1.5);
            var (loss1, z1) = method.Loss(Of(x, y), 1);
            Tensor z0;
            using (Tensor.NoGrad()) z0 = student.Forward(x);
            Assert.Equal(DeepMutualLearningMethod.PeerLoss(z1, [z0], y).ToDouble(), loss1.ToDouble(), 1e-6);
        }
        var (first, last) = Steps(method, Of(x, y), 10);
        Assert.True(last < first, $"dml loss {first} -> {last}");
    }

    [Fact]
    public void PskdTargetsMixTheLabelsWithLastEpochsPredictions()
    {
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (ProgressiveSelfKDMethod)MethodRegistry.Create("pskd", Context(student, null));
        method.BeginTraining(new TrainingPlan(8, 10, 4, 1));
        Assert.Equal(0.2, method.AlphaAt(0), 12);
        Assert.Equal(0.8, method.AlphaAt(3), 12);
        var (x, y) = Batch(8, 9);
        using var _x = x; using var _y = y;
        student.Eval(); // no dropout in the student anyway; keeps the logits identical between calls
        double[] prev;
        using (Tensor.NewDisposeScope())
        {
            // Epoch 0: nothing stored yet, so the target is the one-hot label whatever α_0 is: plain CE.
            var (loss0, logits0) = method.Loss(Of(x, y, epoch: 0), 0);
            Assert.Equal(Functional.CrossEntropy(logits0, y).ToDouble(), loss0.ToDouble(), 1e-6);
            prev = logits0.Softmax(1).To(DType.Float64).ToArray<double>();
            TestUtil.AssertClose(prev.AsSpan(10, 10).ToArray(), method.StoredPrediction(1).ToArray().Select(v => (double)v).ToArray(), atol: 1e-6);
        }
        using (Tensor.NewDisposeScope())
        {
            // Epoch 2: α = 0.6; target = 0.4·onehot + 0.6·(epoch-0 prediction).
            var (loss2, logits2) = method.Loss(Of(x, y, epoch: 2), 0);
            var lp = logits2.LogSoftmax(1).To(DType.Float64).ToArray<double>();
            var yy = y.ToArray<long>();
            double expected = 0;
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 10; j++)
                    expected -= (0.4 * (j == yy[i] ? 1 : 0) + 0.6 * prev[i * 10 + j]) * lp[i * 10 + j];
            Assert.Equal(expected / 8, loss2.ToDouble(), 1e-5);
        }
        method.BeginTraining(new TrainingPlan(8, 10, 4, 1));
        var (first, last) = Steps(method, Of(x, y, epoch: 1), 10);
        Assert.True(last < first, $"pskd loss {first} -> {last}");
    }

    [Fact]
    public void BornAgainNeedsTheSameArchitectureAndDecreases()
    {
        using var previous = FashionMnistModels.Student(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var teacher = FashionMnistModels.Teacher(new Generator(3));
        Assert.Contains("ban: a born-again student has its teacher's architecture", Assert.Throws<ArgumentException>(() => new BornAgainMethod(student, teacher)).Message);
        using var method = (BornAgainMethod)MethodRegistry.Create("ban", Context(student, previous));
        Assert.Equal(1, method.Temperature);
        Assert.Equal(1, method.Alpha);
        var (x, y) = Batch(8, 10);
        using var _x = x; using var _y = y;
        var (first, last) = Steps(method, Of(x, y), 10);
        Assert.True(last < first, $"ban loss {first} -> {last}");
    }

    [Fact]
    public void DefensiveLossIsSoftCrossEntropyAtTAndDecreases()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using var student = FashionMnistModels.Student(new Generator(2));
        using var method = (DefensiveDistillationMethod)MethodRegistry.Create("defensive", Context(student, teacher));
        Assert.Equal(20, method.Temperature);
        var (x, y) = Batch(8, 11);
        using var _x = x; using var _y = y;
        teacher.Eval();
        using (Tensor.NewDisposeScope())
        {
            var (loss, logits) = method.Loss(Of(x, y), 0);
            Tensor t;
            using (Tensor.NoGrad()) t = teacher.Forward(x);
            var p = t.Softmax(1, 20).To(DType.Float64).ToArray<double>();
            var lq = logits.LogSoftmax(1, 20).To(DType.Float64).ToArray<double>();
            Assert.Equal(-p.Zip(lq, (a, b) => a * b).Sum() / 8, loss.ToDouble(), 1e-6);
        }
        var (first, last) = Steps(method, Of(x, y), 10, lr: 0.5);
        Assert.True(last < first, $"defensive loss {first} -> {last}");
    }

    [Fact]
    public void RegistryListsTheMethodsAndExplainsMistakes()
    {
        foreach (var name in new[] { "scratch", "kd", "fitnets", "at", "rkd", "dml", "pskd", "ban", "defensive" })
            Assert.NotNull(MethodRegistry.Find(name));
        using var student = FashionMnistModels.Student(new Generator(2));
        Assert.Contains("unknown distillation method 'dkd2'; available: kd, fitnets", Assert.Throws<ArgumentException>(() => MethodRegistry.Create("dkd2", Context(student, null))).Message);
        Assert.Contains("kd: this method needs a teacher", Assert.Throws<ArgumentException>(() => MethodRegistry.Create("kd", Context(student, null))).Message);
        using var plain = new Sequential(new Flatten(), new Linear(784, 10));
        Assert.Contains("does not expose features", Assert.Throws<ArgumentException>(() => new AttentionTransferMethod(plain, student)).Message);
    }

    internal static MethodContext Context(Module student, Module? teacher, MethodOptions? options = null)
        => new(student, teacher, seed => FashionMnistModels.Student(new Generator(seed)), Sample, 0, options ?? new MethodOptions());
}
