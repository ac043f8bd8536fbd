namespace Engine.Tensors;

/// <summary>
/// Collects every tensor created on this thread while it is the innermost scope, and disposes them
/// when it ends — the deterministic way to release a training step's temporaries:
/// <code>
/// using (Tensor.NewDisposeScope())
/// {
///     var loss = model.Forward(x).Sub(y).Pow(2).Mean();
///     loss.Backward();            // parameter gradients are owned by the parameters, not the scope
/// }                                // every intermediate is released here
/// </code>
/// A tensor that must outlive the scope is kept with <see cref="Tensor.MoveToOuterDisposeScope"/>
/// or <see cref="Tensor.DetachFromDisposeScope"/>.
/// </summary>
public sealed class DisposeScope : IDisposable
{
    [ThreadStatic] private static DisposeScope? t_current;

    private readonly HashSet<Tensor> _tensors = new(ReferenceEqualityComparer.Instance);
    private readonly DisposeScope? _outer;
    private readonly int _threadId = Environment.CurrentManagedThreadId;
    private bool _disposed;

    internal DisposeScope()
    {
        _outer = t_current;
        t_current = this;
    }

    /// <summary>Number of live tensors the scope will dispose.</summary>
    public int Count => _tensors.Count;

    internal static void Register(Tensor t)
    {
        var scope = t_current;
        if (scope is null) return;
        scope._tensors.Add(t);
        t.OwningScope = scope;
    }

    internal static void Unregister(Tensor t)
    {
        var scope = t.OwningScope;
        if (scope is null) return;
        // Another thread's scope is never touched from here: those sets are not thread-safe.
        if (scope._threadId == Environment.CurrentManagedThreadId) scope._tensors.Remove(t);
        t.OwningScope = null;
    }

    internal static void MoveToOuter(Tensor t)
    {
        var scope = t.OwningScope;
        Unregister(t);
        var outer = scope?._outer;
        if (outer is not null && !outer._disposed)
        {
            outer._tensors.Add(t);
            t.OwningScope = outer;
        }
    }

    /// <summary>Disposes every tensor still registered, and makes the enclosing scope current again.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        if (t_current != this)
            throw new InvalidOperationException("DisposeScope: scopes must be disposed innermost first, on the thread that created them.");
        _disposed = true;
        t_current = _outer;
        foreach (var t in _tensors.ToArray())
        {
            t.OwningScope = null;
            t.Dispose();
        }
        _tensors.Clear();
    }
}
