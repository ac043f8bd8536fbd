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
        _featureCache = null;   // a new run: new samples
        _cacheRefused = false;
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

    /// <summary>
    /// The most bytes <see cref="TeacherFeatures"/> may keep for its per-sample cache (default 1 GiB; 0 turns
    /// the cache off); beyond it the teacher simply runs at every step.
    /// </summary>
    public long TeacherFeatureCacheBytes { get; set; } = 1L << 30;

    /// <summary>The teacher features a feature method reads (only these are cached); empty for the others.</summary>
    protected virtual IReadOnlyCollection<string> TeacherFeatureNames => [];

    private TeacherFeatureCache? _featureCache;
    private bool _cacheRefused;

    /// <summary>
    /// Teacher <paramref name="index"/>'s logits and features on the batch, without gradients.
    /// <para>
    /// When the plan says the inputs are fixed (no augmentation), the frozen teacher (eval mode) gives each
    /// sample the same outputs in every epoch, so the logits and the features named by
    /// <see cref="TeacherFeatureNames"/> are stored per sample index (float32) the first time a sample is
    /// seen and gathered afterwards; the values are the same as the forward pass, bit for bit. Only
    /// those features are present in the returned output. Skipped (forward every step) when the cache
    /// would exceed <see cref="TeacherFeatureCacheBytes"/>.
    /// </para>
    /// </summary>
    protected FeatureOutput TeacherFeatures(DistillationBatch batch, int index)
    {
        ArgumentNullException.ThrowIfNull(batch);
        bool cacheable = index == 0 && Plan is { FixedInputs: true } && !_cacheRefused && TeacherFeatureNames.Count > 0 && batch.Images.DType == DType.Float32;
        if (cacheable && _featureCache is { } c && c.Has(batch.Indices)) return c.Gather(batch.Indices, batch.Images.Device);
        FeatureOutput output;
        using (Tensor.NoGrad()) output = AsFeatureModel(Teachers[index], "teacher").ForwardFeatures(batch.Images);
        if (cacheable)
        {
            _featureCache ??= TeacherFeatureCache.Create(Plan!.DatasetSize, output, TeacherFeatureNames, TeacherFeatureCacheBytes);
            if (_featureCache is null) _cacheRefused = true;
            else _featureCache.Store(batch.Indices, output);
        }
        return output;
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
            var x = Tensor.Zeros([1, .. sampleShape], device: MethodTrainer.DeviceOf(model));
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
        _featureCache = null;
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

/// <summary>Per-sample float32 copies of a frozen teacher's logits and chosen features (see <see cref="DistillationMethod.TeacherFeatureCacheBytes"/>).</summary>
internal sealed class TeacherFeatureCache
{
    private readonly string[] _names;          // "" = the output (logits), then the features
    private readonly long[][] _shapes;         // per-sample shapes
    private readonly long[] _sizes;
    private readonly float[][] _data;
    private readonly bool[] _present;

    private TeacherFeatureCache(string[] names, long[][] shapes, int samples)
    {
        _names = names;
        _shapes = shapes;
        _sizes = shapes.Select(s => s.Aggregate(1L, (a, b) => a * b)).ToArray();
        _data = _sizes.Select(n => new float[n * samples]).ToArray();
        _present = new bool[samples];
    }

    /// <summary>A cache shaped after <paramref name="sample"/>, or null when it would exceed <paramref name="maxBytes"/>.</summary>
    public static TeacherFeatureCache? Create(int samples, FeatureOutput sample, IReadOnlyCollection<string> names, long maxBytes)
    {
        var chosen = new List<string> { "" };
        chosen.AddRange(names.Distinct());
        var shapes = chosen.Select(n => (n.Length == 0 ? sample.Output : sample[n]).ShapeArray()[1..]).ToArray();
        long bytes = shapes.Sum(s => s.Aggregate(1L, (a, b) => a * b)) * samples * sizeof(float);
        return bytes > maxBytes || bytes > (long)Array.MaxLength ? null : new TeacherFeatureCache([.. chosen], shapes, samples);
    }

    public bool Has(long[] indices) => indices.All(i => _present[i]);

    public void Store(long[] indices, FeatureOutput output)
    {
        for (int k = 0; k < _names.Length; k++)
        {
            var t = _names[k].Length == 0 ? output.Output : output[_names[k]];
            var v = t.Contiguous().ToArray<float>();
            for (int i = 0; i < indices.Length; i++) Array.Copy(v, i * _sizes[k], _data[k], indices[i] * _sizes[k], _sizes[k]);
        }
        foreach (var i in indices) _present[i] = true;
    }

    /// <summary>The stored outputs of <paramref name="indices"/>, as tensors on <paramref name="device"/> (the batch's).</summary>
    public FeatureOutput Gather(long[] indices, Engine.Runtime.Device device)
    {
        var tensors = new Tensor[_names.Length];
        for (int k = 0; k < _names.Length; k++)
        {
            var v = new float[indices.Length * _sizes[k]];
            for (int i = 0; i < indices.Length; i++) Array.Copy(_data[k], indices[i] * _sizes[k], v, i * _sizes[k], _sizes[k]);
            var host = Tensor.FromArray(v, [indices.Length, .. _shapes[k]]);
            if (device.Type == Engine.Runtime.DeviceType.Cpu) tensors[k] = host;
            else using (host) tensors[k] = host.To(device);
        }
        return new FeatureOutput(tensors[0], _names.Skip(1).Select((n, k) => (n, tensors[k + 1])));
    }
}
