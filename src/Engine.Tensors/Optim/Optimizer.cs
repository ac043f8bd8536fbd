using System.Globalization;
using Engine.Tensors.Cpu;

namespace Engine.Tensors.Optim;

/// <summary>
/// Base of the optimizers: owns parameter groups and per-parameter state, and runs
/// <see cref="Step"/> as one fused in-place pass per parameter (under <see cref="Tensor.NoGrad"/>).
/// <para>
/// Parameters must be leaf floating-point tensors, each in one group only. Parameters without a
/// gradient are skipped by <see cref="Step"/> (their state is not advanced), as in PyTorch.
/// State tensors (momentum buffers, moments) are owned by the optimizer, kept out of every dispose
/// scope, and released by <see cref="Dispose"/>.
/// </para>
/// </summary>
public abstract class Optimizer : IDisposable
{
    private readonly List<ParamGroup> _groups = [];
    private readonly Dictionary<Tensor, int> _index = new(ReferenceEqualityComparer.Instance);
    private readonly List<Tensor> _parameters = [];
    private ParameterState?[] _state = [];
    private readonly Dictionary<Runtime.Device, FlatParameters?> _flat = [];
    private bool _disposed;

    /// <summary>Sets up the groups, filling options they leave null with the defaults given.</summary>
    /// <param name="name">The optimizer's name (used in error messages).</param>
    /// <param name="groups">Parameter groups.</param>
    /// <param name="learningRate">Default learning rate.</param>
    /// <param name="weightDecay">Default weight decay.</param>
    protected Optimizer(string name, IEnumerable<ParamGroup> groups, double learningRate, double weightDecay)
    {
        ArgumentNullException.ThrowIfNull(groups);
        Name = name;
        foreach (var g in groups)
        {
            ArgumentNullException.ThrowIfNull(g);
            g.LearningRate = g.RequestedLearningRate ?? learningRate;
            g.WeightDecay = g.RequestedWeightDecay ?? weightDecay;
            CheckNonNegative("learning rate", g.LearningRate);
            CheckNonNegative("weight decay", g.WeightDecay);
            foreach (var p in g.Parameters)
            {
                ArgumentNullException.ThrowIfNull(p);
                if (!p.DType.IsFloatingPoint())
                    throw new ArgumentException($"{Name}: parameters must be floating-point; got {p.DType.Name()} of shape {ShapeUtil.Format(p.Shape)}.");
                if (!p.IsLeaf)
                    throw new ArgumentException($"{Name}: can't optimize a non-leaf tensor (shape {ShapeUtil.Format(p.Shape)}, made by {p.GradFn!.Name}); pass the leaf parameters.");
                if (!_index.TryAdd(p, _parameters.Count))
                    throw new ArgumentException($"{Name}: a parameter of shape {ShapeUtil.Format(p.Shape)} appears more than once (in one or several groups).");
                _parameters.Add(p);
            }
            _groups.Add(g);
        }
        if (_parameters.Count == 0) throw new ArgumentException($"{Name}: got an empty parameter list.");
        _state = new ParameterState?[_parameters.Count];
    }

    /// <summary>The optimizer's name as in error messages (<c>SGD</c>, <c>Adam</c>, <c>AdamW</c>).</summary>
    public string Name { get; }

    /// <summary>The parameter groups (schedulers change their learning rates).</summary>
    public IReadOnlyList<ParamGroup> ParamGroups => _groups;

    /// <summary>Every parameter, in group order (the index used by <see cref="StateDict"/>).</summary>
    public IReadOnlyList<Tensor> Parameters => _parameters;

    /// <summary>
    /// Clears the gradients of every parameter: sets them to null (the default, as PyTorch 2's
    /// <c>set_to_none=True</c>, which frees their memory) or fills them with zeros.
    /// </summary>
    public void ZeroGrad(bool setToNone = true)
    {
        foreach (var p in _parameters)
        {
            if (p.Grad is null) continue;
            if (setToNone) p.Grad = null;
            else using (Tensor.NoGrad()) p.Grad.Fill_(0);
        }
    }

    /// <summary>
    /// Whether float32 parameters on an accelerator device are stepped by ONE kernel launch per device and
    /// step (default true; SGD, Adam and AdamW): on the first step the optimizer lays them out in one flat
    /// buffer (each parameter tensor becomes a view of it, elements unchanged), gives each a slot in a flat
    /// gradient buffer that autograd then writes its gradient into, and keeps its state in flat buffers, so
    /// one launch of kernels/Optim/FusedOptimKernels.cs updates all of them (see Optim/FlatParameters.cs;
    /// a gradient kept across the next backward sees that backward's values). The results are bitwise those
    /// of the per-parameter kernels. False: one launch per parameter.
    /// </summary>
    public bool FusedDeviceStep { get; set; } = true;

    /// <summary>Whether this optimizer has a fused multi-parameter device step (<see cref="FusedUpdate"/>).</summary>
    private protected virtual bool SupportsFusedStep => false;

    /// <summary>
    /// Steps <paramref name="entries"/> (parameters of <paramref name="flat"/> with their gradient in its slot)
    /// in one launch, reading and advancing their states as <see cref="Update"/> would.
    /// </summary>
    private protected virtual void FusedUpdate(FlatParameters flat, List<FusedEntry> entries)
        => throw new NotSupportedException($"{Name}: no fused device step.");

    /// <summary>One parameter of a fused step: its group, its place in the flat layout and its state.</summary>
    private protected readonly record struct FusedEntry(ParamGroup Group, FlatParameters.Slot Slot, ParameterState State);

    /// <summary>The flat layout of <paramref name="device"/>'s parameters, built on first use (null on the CPU or when none qualifies).</summary>
    private FlatParameters? Flat(Runtime.Device device)
    {
        if (device.Type == Runtime.DeviceType.Cpu) return null;
        if (!_flat.TryGetValue(device, out var flat))
            _flat[device] = flat = FlatParameters.Build(device, _parameters.Select((p, i) => (i, p)));
        return flat;
    }

    /// <summary>Updates every parameter that has a gradient, in place, by the optimizer's rule.</summary>
    public void Step()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var _ = Tensor.NoGrad();
        bool fuse = FusedDeviceStep && SupportsFusedStep;
        if (fuse) foreach (var p in _parameters) Flat(p.Device); // before reading .Grad: building a layout moves gradients into slots
        Dictionary<FlatParameters, List<FusedEntry>>? fused = null;
        int i = 0;
        foreach (var g in _groups)
            foreach (var p in g.Parameters)
            {
                int k = i++;
                var grad = p.Grad;
                if (grad is null) continue;
                var state = _state[k] ??= new ParameterState();
                if (fuse && Flat(p.Device) is { } flat && flat.TryGetSlot(k, out var slot))
                {
                    flat.Gather(slot, grad);
                    fused ??= new(ReferenceEqualityComparer.Instance);
                    if (!fused.TryGetValue(flat, out var list)) fused[flat] = list = [];
                    list.Add(new FusedEntry(g, slot, state));
                    continue;
                }
                var pw = p.IsContiguous ? p : p.Contiguous();
                var gw = grad.IsContiguous ? grad : grad.Contiguous();
                try
                {
                    Update(g, pw, gw, state);
                    if (!ReferenceEquals(pw, p)) p.CopyFrom_(pw);
                }
                finally
                {
                    if (!ReferenceEquals(pw, p)) pw.Dispose();
                    if (!ReferenceEquals(gw, grad)) gw.Dispose();
                }
            }
        if (fused is not null)
            foreach (var (flat, entries) in fused) FusedUpdate(flat, entries);
    }

    /// <summary>
    /// Applies one update to <paramref name="parameter"/> (contiguous) from <paramref name="grad"/>
    /// (contiguous, same shape and dtype), reading and advancing <paramref name="state"/>.
    /// </summary>
    private protected abstract void Update(ParamGroup group, Tensor parameter, Tensor grad, ParameterState state);

    /// <summary>
    /// The optimizer's state as copies: tensors named <c>state.{i}.{buffer}</c> (i the parameter's
    /// index in <see cref="Parameters"/>; buffers <c>momentum_buffer</c>, <c>exp_avg</c>,
    /// <c>exp_avg_sq</c>, <c>max_exp_avg_sq</c>) and scalars <c>state.{i}.step</c>,
    /// <c>param_groups.{g}.lr</c>, <c>param_groups.{g}.weight_decay</c>, <c>param_groups.{g}.initial_lr</c>.
    /// The caller owns the returned tensors.
    /// </summary>
    public OptimizerStateDict StateDict()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var dict = new OptimizerStateDict();
        for (int i = 0; i < _state.Length; i++)
        {
            var s = _state[i];
            if (s is null) continue;
            dict.Scalars[$"state.{i}.step"] = s.Step;
            foreach (var (name, t) in s.Buffers) dict.Tensors[$"state.{i}.{name}"] = t.Clone();
        }
        for (int g = 0; g < _groups.Count; g++)
        {
            dict.Scalars[$"param_groups.{g}.lr"] = _groups[g].LearningRate;
            dict.Scalars[$"param_groups.{g}.weight_decay"] = _groups[g].WeightDecay;
            if (_groups[g].InitialLearningRate is double init) dict.Scalars[$"param_groups.{g}.initial_lr"] = init;
        }
        return dict;
    }

    /// <summary>
    /// Replaces the optimizer's state by copies of the entries of <paramref name="stateDict"/> (as made by
    /// <see cref="StateDict"/> of an optimizer of the same kind over parameters of the same shapes).
    /// Every problem (unknown key, parameter index out of range, shape or dtype mismatch) is listed in
    /// one <see cref="ArgumentException"/>; nothing is changed then.
    /// </summary>
    public void LoadStateDict(OptimizerStateDict stateDict)
    {
        ArgumentNullException.ThrowIfNull(stateDict);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var problems = new List<string>();
        var buffers = new List<(int Index, string Name, Tensor Value)>();
        var steps = new Dictionary<int, long>();
        var groupValues = new List<(int Group, string Name, double Value)>();
        foreach (var (key, t) in stateDict.Tensors)
        {
            if (!TryParseStateKey(key, out int i, out string name) || !BufferNames.Contains(name))
            {
                problems.Add($"'{key}': not an optimizer state tensor (expected state.<index>.<{string.Join("|", BufferNames)}>)");
                continue;
            }
            var p = _parameters[i];
            if (t.DType != p.DType || !ShapeUtil.SameShape(t.Shape, p.Shape))
                problems.Add($"'{key}': {ShapeUtil.Format(t.Shape)} ({t.DType.Name()}) does not match parameter {i} of shape {ShapeUtil.Format(p.Shape)} ({p.DType.Name()})");
            else buffers.Add((i, name, t));
        }
        foreach (var (key, v) in stateDict.Scalars)
        {
            if (TryParseStateKey(key, out int i, out string name) && name == "step")
            {
                if (v < 0 || v != Math.Floor(v)) problems.Add($"'{key}': step must be a non-negative integer, got {v}");
                else steps[i] = (long)v;
                continue;
            }
            var parts = key.Split('.');
            if (parts.Length == 3 && parts[0] == "param_groups" && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int g)
                && parts[2] is "lr" or "weight_decay" or "initial_lr")
            {
                if (g >= _groups.Count) problems.Add($"'{key}': group {g} does not exist (this optimizer has {_groups.Count})");
                else groupValues.Add((g, parts[2], v));
                continue;
            }
            problems.Add($"'{key}': not an optimizer state scalar");
        }
        if (problems.Count > 0)
            throw new ArgumentException($"{Name}.LoadStateDict: {problems.Count} problem(s):\n  " + string.Join("\n  ", problems));

        ClearState();
        foreach (var (i, name, t) in buffers)
        {
            var s = _state[i] ??= new ParameterState();
            using (Tensor.NoGrad()) s.Buffers[name] = t.Clone().DetachFromDisposeScope(); // no graph recorded: a plain copy
        }
        foreach (var (i, step) in steps) (_state[i] ??= new ParameterState()).Step = step;
        foreach (var (g, name, v) in groupValues)
        {
            if (name == "lr") _groups[g].LearningRate = v;
            else if (name == "weight_decay") _groups[g].WeightDecay = v;
            else _groups[g].InitialLearningRate = v;
        }
    }

    private static readonly string[] BufferNames = ["momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

    private bool TryParseStateKey(string key, out int index, out string name)
    {
        index = -1;
        name = "";
        var parts = key.Split('.');
        if (parts.Length != 3 || parts[0] != "state") return false;
        if (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out index) || index >= _parameters.Count) return false;
        name = parts[2];
        return true;
    }

    private void ClearState()
    {
        foreach (var s in _state) s?.Dispose();
        _state = new ParameterState?[_parameters.Count];
        foreach (var flat in _flat.Values) flat?.ResetState();
    }

    /// <summary>Releases the optimizer's state tensors (the parameters stay the caller's).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ClearState();
        foreach (var flat in _flat.Values) flat?.Dispose();
        _flat.Clear();
        GC.SuppressFinalize(this);
    }

    private protected void CheckNonNegative(string what, double value)
    {
        if (!(value >= 0) || double.IsInfinity(value))
            throw new ArgumentOutOfRangeException(what, value, $"{Name}: invalid {what} {value}; expected a finite value >= 0.");
    }

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, n) in tiles: on the calling thread for small
    /// parameters, in parallel tiles (sizes from the element count only) for large ones. Every
    /// element is updated independently, so the result does not depend on the tiling.
    /// </summary>
    private protected static void Tiled(long n, Action<long, long> body)
    {
        if (n < Parallelism.ElementwiseThreshold)
        {
            body(0, n);
            return;
        }
        long tile = Parallelism.TileElements(n);
        long tiles = (n + tile - 1) / tile;
        Parallelism.For(tiles, parallel: true, t => body(t * tile, Math.Min(n, (t + 1) * tile)));
    }
}

/// <summary>One parameter's optimizer state: named buffers of the parameter's shape and a step count.</summary>
internal sealed class ParameterState : IDisposable
{
    public Dictionary<string, Tensor> Buffers { get; } = [];

    public long Step { get; set; }

    /// <summary>The buffer <paramref name="name"/>, created (zeros like <paramref name="like"/>, out of every dispose scope) if missing.</summary>
    public Tensor Buffer(string name, Tensor like, out bool created)
    {
        created = !Buffers.TryGetValue(name, out var t);
        if (created) Buffers[name] = t = Tensor.ZerosLike(like).DetachFromDisposeScope();
        return t!;
    }

    public void Dispose()
    {
        foreach (var t in Buffers.Values) t.Dispose();
        Buffers.Clear();
    }
}

/// <summary>An optimizer's state as named tensors and named scalars (see <see cref="Optimizer.StateDict"/>).</summary>
public sealed class OptimizerStateDict
{
    /// <summary>Per-parameter buffers, <c>state.{index}.{buffer}</c>.</summary>
    public Dictionary<string, Tensor> Tensors { get; } = [];

    /// <summary>Step counts and group options, <c>state.{index}.step</c>, <c>param_groups.{g}.lr</c>, ...</summary>
    public Dictionary<string, double> Scalars { get; } = [];

    /// <summary>
    /// One flat name -> tensor map, ready for <see cref="Serialization.SafeTensors.Save"/>: the buffers
    /// themselves (not copies) and each scalar as a new 0-d float64 tensor (the caller disposes those).
    /// </summary>
    public Dictionary<string, Tensor> ToTensors()
    {
        var all = new Dictionary<string, Tensor>(Tensors, StringComparer.Ordinal);
        foreach (var (k, v) in Scalars) all.Add(k, Tensor.Scalar(v, DType.Float64));
        return all;
    }

    /// <summary>
    /// The inverse of <see cref="ToTensors"/>: names ending in <c>.step</c>, <c>.lr</c>, <c>.weight_decay</c>
    /// or <c>.initial_lr</c> become scalars, every other entry a buffer (the same tensor object).
    /// </summary>
    public static OptimizerStateDict FromTensors(IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var d = new OptimizerStateDict();
        foreach (var (k, t) in tensors)
        {
            if (k.EndsWith(".step", StringComparison.Ordinal) || k.EndsWith(".lr", StringComparison.Ordinal)
                || k.EndsWith(".weight_decay", StringComparison.Ordinal) || k.EndsWith(".initial_lr", StringComparison.Ordinal))
            {
                if (t.NumEl != 1)
                    throw new ArgumentException($"OptimizerStateDict.FromTensors: '{k}' should hold one number; it has shape {ShapeUtil.Format(t.Shape)}.");
                d.Scalars[k] = t.ToDouble();
            }
            else d.Tensors[k] = t;
        }
        return d;
    }
}
