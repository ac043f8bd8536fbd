using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;

namespace Engine.Distillation.Methods;

/// <summary>
/// Base of the methods: holds the student, the teachers and the modules the method creates (owned and
/// disposed by it), and gives one update group (student + extra modules) unless a method overrides it.
/// </summary>
public abstract class DistillationMethod : IDistillationMethod
{
    private readonly List<Module> _extra = [];
    private bool _disposed;

    /// <summary>A method named <paramref name="name"/> training <paramref name="student"/> from <paramref name="teachers"/>.</summary>
    protected DistillationMethod(string name, Module student, IReadOnlyList<Module>? teachers = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(student);
        Name = name;
        Student = student;
        Teachers = teachers ?? [];
        foreach (var t in Teachers) ArgumentNullException.ThrowIfNull(t, nameof(teachers));
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public Module Student { get; }

    /// <inheritdoc/>
    public IReadOnlyList<Module> Teachers { get; }

    /// <inheritdoc/>
    public IReadOnlyList<Module> ExtraModules => _extra;

    /// <inheritdoc/>
    public virtual IReadOnlyList<IReadOnlyList<Tensor>> UpdateGroups
        => [Student.Parameters().Concat(_extra.SelectMany(m => m.Parameters())).ToList()];

    /// <inheritdoc/>
    public virtual bool UsesTeacherLogitsOnly => false;

    /// <summary>The plan given to <see cref="BeginTraining"/> (null before).</summary>
    protected TrainingPlan? Plan { get; private set; }

    /// <inheritdoc/>
    public virtual void BeginTraining(TrainingPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        Plan = plan;
    }

    /// <inheritdoc/>
    public virtual void BeginEpoch(int epoch) { }

    /// <inheritdoc/>
    public virtual void EndEpoch(int epoch) { }

    /// <inheritdoc/>
    public abstract MethodLoss Loss(DistillationBatch batch, int update);

    /// <summary>Registers a module the method creates and trains (e.g. a regressor); the method disposes it.</summary>
    protected TModule AddExtraModule<TModule>(TModule module) where TModule : Module
    {
        ArgumentNullException.ThrowIfNull(module);
        _extra.Add(module);
        return module;
    }

    /// <summary>
    /// Teacher <paramref name="index"/>'s logits on the batch: the trainer's cached ones when present,
    /// otherwise a forward pass without gradients.
    /// </summary>
    protected Tensor TeacherLogits(DistillationBatch batch, int index)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.TeacherLogits is { } cached) return cached[index].View(cached[index].ShapeArray());
        using (Tensor.NoGrad()) return Teachers[index].Forward(batch.Images);
    }

    /// <summary>Teacher <paramref name="index"/>'s logits and features on the batch, without gradients.</summary>
    protected FeatureOutput TeacherFeatures(DistillationBatch batch, int index)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using (Tensor.NoGrad()) return AsFeatureModel(Teachers[index], "teacher").ForwardFeatures(batch.Images);
    }

    /// <summary>The model as an <see cref="IFeatureModel"/>, or an exception naming the method and the role.</summary>
    protected IFeatureModel AsFeatureModel(Module model, string role)
        => model as IFeatureModel ?? throw new ArgumentException($"{Name}: the {role} ({model.GetType().Name}) does not expose features (IFeatureModel); feature methods need ForwardFeatures.");

    /// <summary>
    /// The shape of feature <paramref name="feature"/> of <paramref name="model"/> for one sample of shape
    /// <paramref name="sampleShape"/> (a probe forward in eval mode without gradients; the mode is restored).
    /// </summary>
    protected long[] ProbeFeatureShape(Module model, string role, string feature, long[] sampleShape)
    {
        ArgumentNullException.ThrowIfNull(sampleShape);
        var fm = AsFeatureModel(model, role);
        if (!fm.FeatureNames.Contains(feature))
            throw new ArgumentException($"{Name}: the {role} has no feature '{feature}'; it has: {string.Join(", ", fm.FeatureNames)}.");
        bool training = model.Training;
        model.Eval();
        try
        {
            using var scope = Tensor.NewDisposeScope();
            using var _ = Tensor.NoGrad();
            var x = Tensor.Zeros([1, .. sampleShape]);
            using var output = fm.ForwardFeatures(x);
            return output[feature].ShapeArray();
        }
        finally
        {
            model.Train(training);
        }
    }

    /// <summary>Disposes the modules the method created.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the extra modules and per-run state; override to release more (call the base).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        foreach (var m in _extra) m.Dispose();
    }
}

/// <summary>
/// Base of the logit methods: the student's logits and each teacher's logits (cached by the trainer
/// or computed without gradients) go to <see cref="LogitLoss"/>. A new logit loss (DKD, DIST, TAID,
/// multi-teacher, ...) is one small subclass that implements <see cref="LogitLoss"/>.
/// </summary>
public abstract class LogitDistillationMethod : DistillationMethod
{
    /// <summary>See <see cref="DistillationMethod"/>.</summary>
    protected LogitDistillationMethod(string name, Module student, IReadOnlyList<Module> teachers) : base(name, student, teachers)
    {
        if (teachers.Count == 0) throw new ArgumentException($"{name}: needs at least one teacher.");
    }

    /// <inheritdoc/>
    public override bool UsesTeacherLogitsOnly => true;

    /// <summary>The scalar loss from the student's logits, the teachers' logits (in <see cref="DistillationMethod.Teachers"/> order) and the labels.</summary>
    protected abstract Tensor LogitLoss(Tensor studentLogits, IReadOnlyList<Tensor> teacherLogits, Tensor labels, DistillationBatch batch);

    /// <inheritdoc/>
    public override MethodLoss Loss(DistillationBatch batch, int update)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var s = Student.Forward(batch.Images);
        var t = new Tensor[Teachers.Count];
        try
        {
            for (int i = 0; i < t.Length; i++) t[i] = TeacherLogits(batch, i);
            return new MethodLoss(LogitLoss(s, t, batch.Labels, batch), s);
        }
        finally
        {
            foreach (var x in t) x?.Dispose();
        }
    }
}
