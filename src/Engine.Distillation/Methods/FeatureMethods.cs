using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// FitNets (Romero et al. 2015), as mdistiller's FitNet: <c>L = CE(s, y) + w·MSE(r(F_s), F_t)</c>, w = 100,
/// where F_s is the student's guided layer, F_t the teacher's hint layer and r a 1×1-convolution
/// regressor from the student's channels to the teacher's (trained with the student; created here,
/// seeded). If the two maps differ in height or width, the larger is average-pooled to the smaller
/// (<see cref="FeatureLosses.PoolTo"/>). Single-stage training (the hint term and CE together), as
/// mdistiller, not the paper's two-stage schedule.
/// </summary>
public sealed class FitNetsMethod : DistillationMethod
{
    private readonly Conv2d _regressor;

    /// <summary>FitNets from <paramref name="teacher"/>'s <paramref name="teacherFeature"/> to <paramref name="student"/>'s <paramref name="studentFeature"/>.</summary>
    /// <param name="student">The student (an <see cref="Engine.Tensors.NN.Models.IFeatureModel"/>).</param>
    /// <param name="teacher">The frozen teacher (an <see cref="Engine.Tensors.NN.Models.IFeatureModel"/>).</param>
    /// <param name="sampleShape">One input's shape (e.g. [1, 28, 28]), to probe the channel counts.</param>
    /// <param name="studentFeature">The guided layer (default "block1").</param>
    /// <param name="teacherFeature">The hint layer (default "block2": 64×14×14 for the Fashion-MNIST teacher, the student's block1 is 8×14×14).</param>
    /// <param name="weight">w, the weight of the MSE (100).</param>
    /// <param name="generator">Seeds the regressor.</param>
    public FitNetsMethod(Module student, Module teacher, long[] sampleShape, string studentFeature = "block1", string teacherFeature = "block2",
        double weight = 100, Generator? generator = null) : base("fitnets", student, [teacher])
    {
        StudentFeature = studentFeature;
        TeacherFeature = teacherFeature;
        Weight = weight;
        var s = ProbeFeatureShape(student, "student", studentFeature, sampleShape);
        var t = ProbeFeatureShape(teacher, "teacher", teacherFeature, sampleShape);
        if (s.Length != 4 || t.Length != 4)
            throw new ArgumentException($"fitnets: the hint and guided layers must be feature maps [N, C, H, W]; got student '{studentFeature}' {Util.Format(s)} and teacher '{teacherFeature}' {Util.Format(t)}.");
        _regressor = AddExtraModule(new Conv2d(s[1], t[1], 1, generator: generator));
    }

    /// <summary>The guided layer's name.</summary>
    public string StudentFeature { get; }

    /// <inheritdoc/>
    protected override IReadOnlyCollection<string> TeacherFeatureNames => [TeacherFeature];

    /// <summary>The hint layer's name.</summary>
    public string TeacherFeature { get; }

    /// <summary>w.</summary>
    public double Weight { get; }

    /// <summary>The 1×1 conv regressor (owned by the method).</summary>
    public Conv2d Regressor => _regressor;

    /// <summary>The hint term <c>MSE(r(F_s), F_t)</c> alone (unweighted), for tests and analysis.</summary>
    public Tensor HintLoss(Tensor studentFeature, Tensor teacherFeature)
    {
        using var scope = Tensor.NewDisposeScope();
        var r = _regressor.Forward(studentFeature);
        long h = Math.Min(r.Size(2), teacherFeature.Size(2)), w = Math.Min(r.Size(3), teacherFeature.Size(3));
        return FeatureLosses.Mse(FeatureLosses.PoolTo(r, h, w), FeatureLosses.PoolTo(teacherFeature, h, w)).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var t = TeacherFeatures(batch, 0);
        var s = AsFeatureModel(Student, "student").ForwardFeatures(batch.Images);
        using var scope = Tensor.NewDisposeScope();
        var loss = Functional.CrossEntropy(s.Output, batch.Labels) + HintLoss(s[StudentFeature], t[TeacherFeature]) * Weight;
        foreach (var (_, f) in s.Features) f.Dispose();
        return new MethodLoss(loss.MoveToOuterDisposeScope(), s.Output);
    }
}

/// <summary>
/// Attention transfer (Zagoruyko and Komodakis 2017), as mdistiller's AT:
/// <c>L = CE(s, y) + w·Σ_stages mean((a(F_s) − a(F_t))²)</c>, w = 1000, p = 2,
/// a(F) = normalize(mean_c(F^p)) (<see cref="FeatureLosses.AttentionTransfer"/>; sizes matched by
/// adaptive average pooling).
/// </summary>
public sealed class AttentionTransferMethod : DistillationMethod
{
    /// <summary>AT over the (student feature, teacher feature) <paramref name="pairs"/>.</summary>
    /// <param name="student">The student (an <see cref="Engine.Tensors.NN.Models.IFeatureModel"/>).</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="pairs">Stages to match; default the Fashion-MNIST pairs (block1, block2) and (block2, block3), equal spatial sizes.</param>
    /// <param name="weight">w (1000).</param>
    /// <param name="p">The power p (2).</param>
    public AttentionTransferMethod(Module student, Module teacher, IReadOnlyList<(string Student, string Teacher)>? pairs = null, double weight = 1000, double p = 2)
        : base("at", student, [teacher])
    {
        Pairs = pairs ?? [("block1", "block2"), ("block2", "block3")];
        if (Pairs.Count == 0) throw new ArgumentException("at: expected at least one (student, teacher) feature pair.");
        var sf = AsFeatureModel(student, "student").FeatureNames;
        var tf = AsFeatureModel(teacher, "teacher").FeatureNames;
        foreach (var (s, t) in Pairs)
        {
            if (!sf.Contains(s)) throw new ArgumentException($"at: the student has no feature '{s}'; it has: {string.Join(", ", sf)}.");
            if (!tf.Contains(t)) throw new ArgumentException($"at: the teacher has no feature '{t}'; it has: {string.Join(", ", tf)}.");
        }
        Weight = weight;
        P = p;
    }

    /// <summary>The matched stages.</summary>
    public IReadOnlyList<(string Student, string Teacher)> Pairs { get; }

    /// <inheritdoc/>
    protected override IReadOnlyCollection<string> TeacherFeatureNames => Pairs.Select(p => p.Teacher).ToList();

    /// <summary>w.</summary>
    public double Weight { get; }

    /// <summary>p.</summary>
    public double P { get; }

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var t = TeacherFeatures(batch, 0);
        var s = AsFeatureModel(Student, "student").ForwardFeatures(batch.Images);
        using var scope = Tensor.NewDisposeScope();
        var at = FeatureLosses.AttentionTransfer(s[Pairs[0].Student], t[Pairs[0].Teacher], P);
        for (int i = 1; i < Pairs.Count; i++) at = at + FeatureLosses.AttentionTransfer(s[Pairs[i].Student], t[Pairs[i].Teacher], P);
        var loss = Functional.CrossEntropy(s.Output, batch.Labels) + at * Weight;
        foreach (var (_, f) in s.Features) f.Dispose();
        return new MethodLoss(loss.MoveToOuterDisposeScope(), s.Output);
    }
}

/// <summary>
/// Relational KD (Park et al. 2019), as mdistiller's RKD: <c>L = CE(s, y) + 25·L_D + 50·L_A</c> on the
/// penultimate embeddings (<see cref="FeatureLosses.Rkd"/>: distance and angle terms, smooth-L1). The
/// embeddings may have different widths (Fashion-MNIST: student 784, teacher 256).
/// </summary>
public sealed class RelationalKDMethod : DistillationMethod
{
    /// <summary>RKD between <paramref name="studentFeature"/> and <paramref name="teacherFeature"/> (both "embedding" by default).</summary>
    public RelationalKDMethod(Module student, Module teacher, string studentFeature = "embedding", string teacherFeature = "embedding",
        double distanceWeight = 25, double angleWeight = 50) : base("rkd", student, [teacher])
    {
        var sf = AsFeatureModel(student, "student").FeatureNames;
        var tf = AsFeatureModel(teacher, "teacher").FeatureNames;
        if (!sf.Contains(studentFeature)) throw new ArgumentException($"rkd: the student has no feature '{studentFeature}'; it has: {string.Join(", ", sf)}.");
        if (!tf.Contains(teacherFeature)) throw new ArgumentException($"rkd: the teacher has no feature '{teacherFeature}'; it has: {string.Join(", ", tf)}.");
        StudentFeature = studentFeature;
        TeacherFeature = teacherFeature;
        DistanceWeight = distanceWeight;
        AngleWeight = angleWeight;
    }

    /// <summary>The student's embedding feature.</summary>
    public string StudentFeature { get; }

    /// <inheritdoc/>
    protected override IReadOnlyCollection<string> TeacherFeatureNames => [TeacherFeature];

    /// <summary>The teacher's embedding feature.</summary>
    public string TeacherFeature { get; }

    /// <summary>Weight of the distance term (25).</summary>
    public double DistanceWeight { get; }

    /// <summary>Weight of the angle term (50).</summary>
    public double AngleWeight { get; }

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var t = TeacherFeatures(batch, 0);
        var s = AsFeatureModel(Student, "student").ForwardFeatures(batch.Images);
        using var scope = Tensor.NewDisposeScope();
        var es = s[StudentFeature];
        var et = t[TeacherFeature];
        if (es.Rank != 2) es = es.Flatten(1);
        if (et.Rank != 2) et = et.Flatten(1);
        var loss = Functional.CrossEntropy(s.Output, batch.Labels) + FeatureLosses.Rkd(es, et, DistanceWeight, AngleWeight);
        foreach (var (_, f) in s.Features) f.Dispose();
        return new MethodLoss(loss.MoveToOuterDisposeScope(), s.Output);
    }
}
