using System.Text;

namespace Engine.Tensors.NN;

/// <summary>
/// Base class of every layer and model, after torch.nn.Module.
/// <para>
/// A module owns named parameters (leaf tensors that require grad), named buffers (state that is saved
/// but not trained, e.g. BatchNorm's running statistics) and named child modules, each kept in
/// registration order. Names of nested entries are dotted paths, exactly as PyTorch writes them
/// ("f.0.weight", "f.1.running_mean"), so <see cref="StateDict"/> keys match a PyTorch checkpoint's.
/// </para>
/// <para>
/// The module owns its tensors: they are taken out of any dispose scope when registered and released
/// by <see cref="Dispose()"/> (which also disposes the children). Tensors returned by
/// <see cref="Parameters"/>, <see cref="Buffers"/> and <see cref="StateDict"/> are the module's own; do
/// not dispose them.
/// </para>
/// </summary>
public abstract class Module : IDisposable
{
    private readonly List<string> _parameterNames = [];
    private readonly Dictionary<string, Tensor?> _parameters = [];
    private readonly List<string> _bufferNames = [];
    private readonly Dictionary<string, Tensor?> _buffers = [];
    private readonly HashSet<string> _nonPersistent = [];
    private readonly List<string> _moduleNames = [];
    private readonly Dictionary<string, Module> _modules = [];
    private bool _disposed;

    /// <summary>True in training mode (the default), false after <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>The layer's computation. Returns a new tensor object (never <paramref name="input"/> itself).</summary>
    public abstract Tensor Forward(Tensor input);

    // ------------------------------------------------------------------ registration

    /// <summary>
    /// Registers <paramref name="value"/> as parameter <paramref name="name"/> (null: declared but absent,
    /// like PyTorch's bias=None; not listed anywhere). The tensor must be a floating-point leaf; it is made
    /// to require grad and taken out of the current dispose scope. Returns <paramref name="value"/>.
    /// </summary>
    protected Tensor? RegisterParameter(string name, Tensor? value)
    {
        CheckNewName(name);
        if (value is not null)
        {
            if (!value.DType.IsFloatingPoint())
                throw new ArgumentException($"{TypeName}: parameter '{name}' must be a floating-point tensor, got {value.DType.Name()} {ShapeUtil.Format(value.Shape)}.");
            if (!value.IsLeaf)
                throw new ArgumentException($"{TypeName}: parameter '{name}' must be a leaf tensor (not the result of an op); use Detach().");
            value.DetachFromDisposeScope();
            value.RequiresGrad = true;
        }
        _parameterNames.Add(name);
        _parameters[name] = value;
        return value;
    }

    /// <summary>
    /// Registers <paramref name="value"/> as buffer <paramref name="name"/> (saved in <see cref="StateDict"/>
    /// when <paramref name="persistent"/>; never trained). Taken out of the current dispose scope.
    /// </summary>
    protected Tensor? RegisterBuffer(string name, Tensor? value, bool persistent = true)
    {
        CheckNewName(name);
        value?.DetachFromDisposeScope();
        _bufferNames.Add(name);
        _buffers[name] = value;
        if (!persistent) _nonPersistent.Add(name);
        return value;
    }

    /// <summary>Registers <paramref name="module"/> as child <paramref name="name"/>. Returns it.</summary>
    protected TModule RegisterModule<TModule>(string name, TModule module) where TModule : Module
    {
        ArgumentNullException.ThrowIfNull(module);
        CheckNewName(name);
        _moduleNames.Add(name);
        _modules[name] = module;
        return module;
    }

    /// <summary>The parameter registered as <paramref name="name"/> (null if registered as absent).</summary>
    protected Tensor? GetParameter(string name) => _parameters.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{TypeName}: no parameter '{name}'.");

    /// <summary>The buffer registered as <paramref name="name"/> (null if registered as absent).</summary>
    protected Tensor? GetBuffer(string name) => _buffers.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{TypeName}: no buffer '{name}'.");

    /// <summary>Replaces buffer <paramref name="name"/>'s tensor (disposing the old one); the new one is taken out of dispose scopes.</summary>
    protected void SetBuffer(string name, Tensor value)
    {
        if (!_buffers.TryGetValue(name, out var old)) throw new KeyNotFoundException($"{TypeName}: no buffer '{name}'.");
        value.DetachFromDisposeScope();
        if (!ReferenceEquals(old, value)) old?.Dispose();
        _buffers[name] = value;
    }

    private void CheckNewName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('.'))
            throw new ArgumentException($"{TypeName}: name '{name}' may not contain '.' (dots separate nested names).");
        if (_parameters.ContainsKey(name) || _buffers.ContainsKey(name) || _modules.ContainsKey(name))
            throw new ArgumentException($"{TypeName}: name '{name}' is already registered.");
    }

    // ------------------------------------------------------------------ traversal

    /// <summary>Direct children with their names, in registration order.</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren()
    {
        foreach (var n in _moduleNames) yield return (n, _modules[n]);
    }

    /// <summary>Direct children in registration order.</summary>
    public IEnumerable<Module> Children() => NamedChildren().Select(c => c.Module);

    /// <summary>This module and every descendant, depth first, with dotted names ("" for this one).</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        yield return (prefix, this);
        foreach (var (name, child) in NamedChildren())
            foreach (var m in child.NamedModules(Join(prefix, name))) yield return m;
    }

    /// <summary>
    /// Parameters with dotted names, in PyTorch's order (a module's own first, then each child's). A tensor
    /// shared by two modules is listed once, under its first name.
    /// </summary>
    public IEnumerable<(string Name, Tensor Parameter)> NamedParameters(bool recurse = true)
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (prefix, m) in recurse ? NamedModules() : [("", this)])
            foreach (var n in m._parameterNames)
                if (m._parameters[n] is { } p && seen.Add(p)) yield return (Join(prefix, n), p);
    }

    /// <summary>Parameters (see <see cref="NamedParameters"/>).</summary>
    public IEnumerable<Tensor> Parameters(bool recurse = true) => NamedParameters(recurse).Select(p => p.Parameter);

    /// <summary>Buffers with dotted names, in PyTorch's order (persistent and non-persistent).</summary>
    public IEnumerable<(string Name, Tensor Buffer)> NamedBuffers(bool recurse = true)
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (prefix, m) in recurse ? NamedModules() : [("", this)])
            foreach (var n in m._bufferNames)
                if (m._buffers[n] is { } b && seen.Add(b)) yield return (Join(prefix, n), b);
    }

    /// <summary>Buffers (see <see cref="NamedBuffers"/>).</summary>
    public IEnumerable<Tensor> Buffers(bool recurse = true) => NamedBuffers(recurse).Select(b => b.Buffer);

    /// <summary>Total number of elements of all parameters (each shared tensor once).</summary>
    public long ParameterCount(bool trainableOnly = false)
        => Parameters().Where(p => !trainableOnly || p.RequiresGrad).Sum(p => p.NumEl);

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

    // ------------------------------------------------------------------ modes and gradients

    /// <summary>Sets training mode on this module and every descendant. Returns this module.</summary>
    public Module Train(bool mode = true)
    {
        foreach (var (_, m) in NamedModules()) m.Training = mode;
        return this;
    }

    /// <summary>Evaluation mode (Dropout off, BatchNorm on running statistics): <c>Train(false)</c>.</summary>
    public Module Eval() => Train(false);

    /// <summary>Sets <see cref="Tensor.RequiresGrad"/> on every parameter (false freezes the module). Returns this module.</summary>
    public Module RequiresGrad_(bool requiresGrad = true)
    {
        foreach (var p in Parameters()) p.RequiresGrad = requiresGrad;
        return this;
    }

    /// <summary>Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.Grad = null;
    }

    /// <summary>
    /// Converts every floating-point parameter and buffer to <paramref name="dtype"/> in place (integer
    /// buffers such as num_batches_tracked are kept). Parameters stay leaves that require grad; their
    /// gradients are dropped. Returns this module.
    /// </summary>
    public Module To(DType dtype)
    {
        if (!dtype.IsFloatingPoint()) throw new ArgumentException($"{TypeName}.To: modules convert to float dtypes only, not {dtype.Name()}.");
        foreach (var (_, m) in NamedModules())
        {
            foreach (var n in m._parameterNames)
            {
                var p = m._parameters[n];
                if (p is null || p.DType == dtype) continue;
                Tensor converted;
                using (Tensor.NoGrad()) converted = p.To(dtype);
                converted.DetachFromDisposeScope();
                converted.RequiresGrad = p.RequiresGrad;
                p.Dispose();
                m._parameters[n] = converted;
            }
            foreach (var n in m._bufferNames)
            {
                var b = m._buffers[n];
                if (b is null || !b.DType.IsFloatingPoint() || b.DType == dtype) continue;
                m.SetBuffer(n, b.To(dtype));
            }
        }
        return this;
    }

    /// <summary>
    /// Moves every parameter and buffer to <paramref name="device"/> in place (values unchanged; the
    /// kernels of that device then run the module's ops). Parameters stay leaves that require grad;
    /// their gradients are dropped. Returns this module.
    /// </summary>
    public Module To(Engine.Runtime.Device device)
    {
        foreach (var (_, m) in NamedModules())
        {
            foreach (var n in m._parameterNames)
            {
                var p = m._parameters[n];
                if (p is null || p.Device == device) continue;
                Tensor moved;
                using (Tensor.NoGrad()) using (var detached = p.Detach()) moved = detached.To(device);
                moved.DetachFromDisposeScope();
                moved.RequiresGrad = p.RequiresGrad;
                p.Dispose();
                m._parameters[n] = moved;
            }
            foreach (var n in m._bufferNames)
            {
                var b = m._buffers[n];
                if (b is null || b.Device == device) continue;
                m.SetBuffer(n, b.To(device));
            }
        }
        return this;
    }

    // ------------------------------------------------------------------ state dict

    /// <summary>
    /// Parameters and persistent buffers by dotted name, in PyTorch's state_dict order (for each module:
    /// its parameters, then its buffers, then its children). The values are the module's own tensors
    /// (not copies): do not dispose them; copy them to keep a snapshot.
    /// </summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var dict = new Dictionary<string, Tensor>();
        foreach (var (prefix, m) in NamedModules())
        {
            foreach (var n in m._parameterNames)
                if (m._parameters[n] is { } p) dict[Join(prefix, n)] = p;
            foreach (var n in m._bufferNames)
                if (m._buffers[n] is { } b && !m._nonPersistent.Contains(n)) dict[Join(prefix, n)] = b;
        }
        return dict;
    }

    /// <summary>
    /// Copies the tensors of <paramref name="stateDict"/> into this module's parameters and persistent buffers
    /// (converting dtypes). Everything is validated before anything is copied: an entry whose shape differs
    /// from the module's is always an error; with <paramref name="strict"/>, so are keys the module has
    /// that the dictionary lacks (missing) and keys the dictionary has that the module lacks (unexpected).
    /// The <see cref="StateDictException"/> lists every problem at once.
    /// Returns the missing and unexpected keys (both empty when strict).
    /// </summary>
    public StateDictMismatch LoadStateDict(IReadOnlyDictionary<string, Tensor> stateDict, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(stateDict);
        var own = StateDict();
        var missing = own.Keys.Where(k => !stateDict.ContainsKey(k)).ToList();
        var unexpected = stateDict.Keys.Where(k => !own.ContainsKey(k)).ToList();
        var mismatched = new List<string>();
        var problems = new StringBuilder();
        foreach (var (name, target) in own)
        {
            if (!stateDict.TryGetValue(name, out var src)) continue;
            if (!ShapeUtil.SameShape(src.Shape, target.Shape))
            {
                mismatched.Add(name);
                problems.AppendLine($"  size mismatch for '{name}': the state dict has shape {ShapeUtil.Format(src.Shape)}, the model has {ShapeUtil.Format(target.Shape)}");
            }
            else if (src.DType.IsFloatingPoint() != target.DType.IsFloatingPoint())
            {
                mismatched.Add(name);
                problems.AppendLine($"  dtype mismatch for '{name}': the state dict has {src.DType.Name()}, the model has {target.DType.Name()}");
            }
        }
        if (strict)
        {
            foreach (var k in missing) problems.AppendLine($"  missing key '{k}' (the model expects shape {ShapeUtil.Format(own[k].Shape)})");
            foreach (var k in unexpected) problems.AppendLine($"  unexpected key '{k}' (shape {ShapeUtil.Format(stateDict[k].Shape)})");
        }
        if (problems.Length > 0)
            throw new StateDictException(
                $"LoadStateDict: error(s) loading the state dict into {TypeName}:\n{problems}",
                strict ? missing : [], strict ? unexpected : [], mismatched);
        using (Tensor.NoGrad())
            foreach (var (name, target) in own)
                if (stateDict.TryGetValue(name, out var src)) target.CopyFrom_(src);
        return new StateDictMismatch(missing, unexpected);
    }

    // ------------------------------------------------------------------ description and lifetime

    /// <summary>The layer's own settings for <see cref="ToString"/> (e.g. "in_features=4, out_features=3").</summary>
    protected virtual string ExtraRepr() => "";

    /// <summary>The class name, for error messages.</summary>
    protected string TypeName => GetType().Name;

    /// <summary>The layer as PyTorch prints it, e.g. "Linear(in_features=4, out_features=3, bias=True)", for error messages.</summary>
    protected string Describe() => $"{TypeName}({ExtraRepr()})";

    /// <summary>PyTorch-style description of the module tree.</summary>
    public override string ToString()
    {
        if (_moduleNames.Count == 0) return Describe();
        var sb = new StringBuilder(TypeName).Append("(\n");
        var extra = ExtraRepr();
        if (extra.Length > 0) sb.Append("  ").Append(extra).Append('\n');
        foreach (var (name, child) in NamedChildren())
            sb.Append("  (").Append(name).Append("): ").Append(child.ToString().Replace("\n", "\n  ")).Append('\n');
        return sb.Append(')').ToString();
    }

    /// <summary>Disposes every parameter, buffer and child module.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the module's tensors and children; override to release more (call the base).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        foreach (var p in _parameters.Values) p?.Dispose();
        foreach (var b in _buffers.Values) b?.Dispose();
        foreach (var m in _modules.Values) m.Dispose();
    }
}

/// <summary>What <see cref="Module.LoadStateDict"/> did not match (PyTorch's _IncompatibleKeys).</summary>
/// <param name="MissingKeys">Keys of the module that the state dict lacked.</param>
/// <param name="UnexpectedKeys">Keys of the state dict that the module lacks.</param>
public sealed record StateDictMismatch(IReadOnlyList<string> MissingKeys, IReadOnlyList<string> UnexpectedKeys);

/// <summary>A state dict did not fit a module; the message and the lists name every offending entry.</summary>
public sealed class StateDictException(string message, IReadOnlyList<string> missingKeys, IReadOnlyList<string> unexpectedKeys, IReadOnlyList<string> mismatchedKeys)
    : ArgumentException(message)
{
    /// <summary>Keys the module has and the state dict lacks (reported when strict).</summary>
    public IReadOnlyList<string> MissingKeys { get; } = missingKeys;

    /// <summary>Keys the state dict has and the module lacks (reported when strict).</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; } = unexpectedKeys;

    /// <summary>Keys present in both whose shapes (or float/integer kind) differ.</summary>
    public IReadOnlyList<string> MismatchedKeys { get; } = mismatchedKeys;
}
